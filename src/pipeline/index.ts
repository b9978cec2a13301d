import type { Credential } from '../auth/credentials.ts';
import type { AuthEngine } from '../auth/engine.ts';
import type { Failure, Result } from '../errors.ts';
import type { Fanout } from '../fanout/fanout.ts';
import type { Metrics, Transport } from '../metrics.ts';
import type { RegistryView } from '../registry/view.ts';
import type { Message, Principal, Protocol, Target } from '../types.ts';
import { authorize, type Admission } from './authorize.ts';
import { requireConcreteTarget } from './parse.ts';
import { validate } from './validate.ts';

export type { Admission };

/** An admission, or its refusal; a refused right names the principal that was refused (never sent to the client). */
export type Admitted = Result<Admission> | (Failure & { readonly refused: Principal });

export interface PipelineDeps {
  readonly view: RegistryView;
  readonly auth: AuthEngine;
  readonly fanout: Fanout;
  readonly metrics: Metrics;
}

/**
 * The message path, in order: parse (by the transport: parse.ts) -> authenticate (auth/engine.ts) -> authorize ->
 * validate -> fan out. `admit` runs the first two stages and is all a connection needs to open (`authenticate` alone
 * when it names no target yet, as an MQTT CONNECT); both answer synchronously unless a token must go to the worker
 * pool. A live connection's principal is re-checked only when the registry changes (`reauthorize`), never per message.
 * `publish` runs the rest for each message. Nothing here throws on bad input.
 */
export function createPipeline({ view, auth, fanout, metrics }: PipelineDeps) {
  /** The authenticate stage alone, counted by transport: all an MQTT CONNECT needs, as it names no target yet. */
  function authenticate(credential: Credential | undefined, transport: Transport): Result<Principal> | Promise<Result<Principal>> {
    const principal = auth.authenticate(credential);
    return principal instanceof Promise ? principal.then((p) => counted(p, transport)) : counted(principal, transport);
  }

  function counted(principal: Result<Principal>, transport: Transport): Result<Principal> {
    metrics.authenticated(transport, principal.ok ? 'ok' : principal.code);
    return principal;
  }

  function admitted(principal: Result<Principal>, target: Target, need: number): Admitted {
    if (!principal.ok) return principal;
    const admission = authorize(view, principal.value, need, target);
    return admission.ok ? admission : { ...admission, refused: principal.value };
  }

  function admit(credential: Credential | undefined, target: Target, need: number, protocol: Protocol): Admitted | Promise<Admitted> {
    const principal = authenticate(credential, protocol);
    return principal instanceof Promise ? principal.then((p) => admitted(p, target, need)) : admitted(principal, target, need);
  }

  /** A live connection after a registry change: is its principal still valid, and still allowed? */
  function reauthorize(principal: Principal, target: Target, need: number): Result<Admission> {
    return auth.whyInvalid(principal) ?? authorize(view, principal, need, target);
  }

  /** A live connection naming a new target (an MQTT PUBLISH or SUBSCRIBE): its principal is kept valid by events. */
  function authorizeFor(principal: Principal, target: Target, need: number): Result<Admission> {
    return authorize(view, principal, need, target);
  }

  /**
   * `borrowed`: the payload is a view into transport memory valid only during this call (a uWS body chunk or frame).
   * It is validated in place; when the channel passes it through unchanged (raw, json) it is copied, once, because
   * fan-out may keep it (the bus encodes it at once, WS subscribers write at the end of the loop turn, aedes may queue a delivery).
   */
  function publish(admission: Admission, protocol: Protocol, target: Target, mediaType: string | undefined, payload: Uint8Array, borrowed: boolean): Result<Message> {
    const concrete = requireConcreteTarget(target);
    if (!concrete.ok) return rejected(protocol, concrete);
    const now = Date.now();
    const body = validate(admission.channel.payloadFormat, mediaType, payload, now / 1000);
    if (!body.ok) return rejected(protocol, body);
    const message: Message = {
      domainId: admission.channel.domainId,
      channelId: admission.channel.id,
      subtopic: target.subtopic,
      publisher: admission.principal.id,
      protocol,
      created: now,
      payload: borrowed && body.value === payload ? Buffer.copyBytesFrom(payload) : body.value,
    };
    fanout.publish(message);
    metrics.accepted(protocol);
    return { ok: true, value: message };
  }

  /** Counts a refusal; transports call it for refusals they find themselves (size limits, admission). */
  function rejected(protocol: Protocol, failure: Failure): Failure {
    metrics.rejected(protocol, failure.code);
    return failure;
  }

  return { authenticate, admit, reauthorize, authorizeFor, publish, rejected };
}

export type Pipeline = ReturnType<typeof createPipeline>;
