import type { Credential } from '../auth/credentials.ts';
import type { Failure, Result } from '../errors.ts';
import type { Subscriptions } from '../fanout/subscriptions.ts';
import type { Metrics } from '../metrics.ts';
import type { RegistryView } from '../registry/view.ts';
import type { Message, Protocol, Target } from '../types.ts';
import { authenticate } from './authenticate.ts';
import { authorize, type Admission } from './authorize.ts';
import { requireConcreteTarget } from './parse.ts';
import { validate } from './validate.ts';

export type { Admission };

export interface PipelineDeps {
  readonly view: RegistryView;
  readonly subscriptions: Subscriptions;
  readonly metrics: Metrics;
}

/**
 * The message path, in order: parse (by the transport: parse.ts) -> authenticate -> authorize -> validate -> fan out.
 * `admit` runs the first two stages and is all a connection needs to open; `publish` runs the rest for each message.
 * Every stage returns a Result; nothing here throws on bad input.
 */
export function createPipeline({ view, subscriptions, metrics }: PipelineDeps) {
  function admit(credential: Credential | undefined, target: Target, need: number): Result<Admission> {
    const principal = authenticate(view, credential);
    metrics.authenticated(principal.ok ? 'ok' : principal.code);
    if (!principal.ok) return principal;
    return authorize(view, principal.value, need, target);
  }

  function publish(admission: Admission, protocol: Protocol, target: Target, mediaType: string | undefined, payload: Uint8Array): Result<Message> {
    const concrete = requireConcreteTarget(target);
    if (!concrete.ok) return rejected(protocol, concrete);
    const now = Date.now();
    const body = validate(admission.channel.payloadFormat, mediaType, payload, now / 1000);
    if (!body.ok) return rejected(protocol, body);
    const message: Message = {
      domainId: admission.channel.domainId,
      channelId: admission.channel.id,
      subtopic: target.subtopic,
      publisher: admission.principal.clientId,
      protocol,
      created: now,
      payload: body.value,
    };
    metrics.delivered(subscriptions.deliver(message));
    metrics.accepted(protocol);
    return { ok: true, value: message };
  }

  /** Counts a refusal; transports call it for refusals they find themselves (size limits, admission). */
  function rejected(protocol: Protocol, failure: Failure): Failure {
    metrics.rejected(protocol, failure.code);
    return failure;
  }

  return { admit, publish, rejected };
}

export type Pipeline = ReturnType<typeof createPipeline>;
