import { AsyncLocalStorage } from 'node:async_hooks';
import { pino, type Logger } from 'pino';
import type { Credential } from './auth/credentials.ts';
import type { ErrorCode, Failure } from './errors.ts';
import type { Admitted } from './pipeline/index.ts';
import type { Principal } from './types.ts';

/**
 * Where an event happened: `http` is HTTP publish, `api` the REST API (logins and tokens included), `mqtt-ws` MQTT
 * over WebSocket. `cli` is the `fleetgate` command line.
 */
export type AuditProtocol = 'http' | 'api' | 'ws' | 'mqtt' | 'mqtt-ws' | 'cli';

/** What was presented: a credential's kind, `password` (login), `refresh`/`recovery` (tokens), or `none`. */
export type AuditCredential = Credential['kind'] | 'password' | 'refresh' | 'recovery' | 'none';

/** Who, when known: the principal (kind and id), or only the identity claimed (an MQTT or Basic username, an email). */
export interface AuditWho {
  readonly kind?: Principal['kind'];
  readonly id?: string;
  readonly username?: string;
  /** the MQTT client identifier (a session name, not a fleetgate client id) */
  readonly mqtt_client_id?: string;
}

export interface AuthnEvent extends AuditWho {
  readonly protocol: AuditProtocol;
  readonly remote: string;
  readonly credential: AuditCredential;
  /** ok, or the refusal */
  readonly result: 'ok' | Failure;
}

export interface AuthzEvent extends AuditWho {
  readonly protocol: AuditProtocol;
  readonly remote: string;
  readonly action: 'publish' | 'subscribe' | 'connect' | 'admin';
  /** the topic, path or route asked for */
  readonly target: string;
  readonly failure: Failure;
}

export interface ChangeEvent {
  /** e.g. `client.create`, `keys.rotate` */
  readonly op: string;
  /** the ids involved (never a secret) */
  readonly ids: Readonly<Record<string, string | number | readonly string[]>>;
  /** default: the actor of the current `as()` scope, else the audit's default (`cli` in the CLI, `gateway` otherwise) */
  readonly actor?: string;
}

export interface LimitEvent extends AuditWho {
  readonly protocol: AuditProtocol;
  readonly remote: string;
  /** what the limit is counted on: the address, or one account from that address (docs/RATE-LIMITS.md) */
  readonly key: 'address' | 'account';
  /** what was done: a block begun (failures reached the limit), or an attempt refused unchecked during one */
  readonly action: 'blocked' | 'refused';
  /** the account: `client:<id>` or `user:<login>` */
  readonly account?: string;
  readonly code: ErrorCode;
  /** seconds until a retry may succeed */
  readonly retry_after?: number;
}

export interface Audit {
  /** An authentication decision. Refusals also go to the main log at info. */
  authn(event: AuthnEvent): void;
  /** A refused authorisation (allowed ones are not audited: that would be a line per message). Also logged at info. */
  authz(event: AuthzEvent): void;
  /** A registry or key change, done. */
  change(event: ChangeEvent): void;
  /** A rate-limit action. Also logged at info. */
  limit(event: LimitEvent): void;
  /** Runs `fn` with `actor` (an admin user id) as the actor of the changes it makes. */
  as<T>(actor: string, fn: () => T): T;
  /** Writes the count of refusals left out by the budget, if any, and closes the audit file. */
  close(): void;
}

/**
 * Refusal lines per second (authn, authz, limit). Past it they are counted, and one `suppressed` event says how many
 * were left out: a flood of bad credentials cannot turn into a flood of log writes.
 */
export const kAuditRefusalsPerSecond = 1000;

/**
 * The audit stream (FLEETGATE_AUDIT_LOG): `stdout`, `off`, or a file path (appended, created 0600). Each event is one
 * JSON line with `"audit":true` and `"event"`, at level info whatever FLEETGATE_LOG_LEVEL says. Refusals are also
 * logged at info on `log` (the main log), unless the audit stream is stdout: then its line is that log line.
 * `stdoutFd`: where `stdout` goes (the CLI passes 2: its stdout is its JSON answer).
 */
export function createAudit(destination: string, log: Logger | undefined, options: { stdoutFd?: 1 | 2; defaultActor?: string } = {}): Audit {
  const stream = destination === 'off' ? undefined
    : destination === 'stdout' ? pino.destination({ dest: options.stdoutFd ?? 1, sync: true })
      : pino.destination({ dest: destination, sync: true, append: true, mkdir: true, mode: 0o600 });
  const out = stream === undefined ? undefined : pino({ level: 'info', base: { service: 'fleetgate', audit: true } }, stream);
  const mirror = destination === 'stdout' ? undefined : log;
  const actors = new AsyncLocalStorage<string>();
  const defaultActor = options.defaultActor ?? 'gateway';
  let windowStart = 0;
  let used = 0;
  let suppressed = 0;

  const flushSuppressed = (): void => {
    if (suppressed === 0) return;
    out?.info({ event: 'suppressed', count: suppressed }, `${suppressed} refusal events left out (over ${kAuditRefusalsPerSecond}/s)`);
    mirror?.info({ suppressed }, 'refusal log lines left out');
    suppressed = 0;
  };
  /** Within the budget of this second? */
  const admit = (): boolean => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      flushSuppressed();
      windowStart = now;
      used = 0;
    }
    if (used < kAuditRefusalsPerSecond) {
      used++;
      return true;
    }
    suppressed++;
    return false;
  };

  const refusal = (fields: Record<string, unknown>, message: string): void => {
    if (!admit()) return;
    out?.info(fields, message);
    if (mirror !== undefined) {
      const { event: _event, ...rest } = fields;
      mirror.info(rest, message);
    }
  };

  return {
    authn({ result, ...fields }) {
      if (result === 'ok') return void out?.info({ event: 'authn', ...fields, result: 'ok' }, 'authenticated');
      refusal({ event: 'authn', ...fields, result: 'refused', code: result.code, reason: result.message }, 'authentication refused');
    },
    authz({ failure, ...rest }) {
      refusal({ event: 'authz', ...rest, result: 'refused', code: failure.code, reason: failure.message }, `${rest.action} refused`);
    },
    change({ op, ids, actor }) {
      out?.info({ event: 'change', actor: actor ?? actors.getStore() ?? defaultActor, op, ...ids }, op);
    },
    limit(event) {
      refusal({ event: 'limit', ...event }, `rate limit: ${event.action}`);
    },
    as: (actor, fn) => actors.run(actor, fn),
    close() {
      flushSuppressed();
      // A file is ours to close; stdout and stderr are not.
      if (destination !== 'stdout' && stream !== undefined) stream.end();
    },
  };
}

/** The audit stream of a `fleetgate` command: its changes are the CLI's, and `stdout` means stderr (stdout is its answer). */
export function cliAudit(destination: string): Audit {
  return createAudit(destination, undefined, { stdoutFd: 2, defaultActor: 'cli' });
}

/** The audit fields of a principal. */
export function who(principal: Principal): AuditWho {
  return { kind: principal.kind, id: principal.id };
}

/** The identity a credential claims before it is checked (a Basic user or a certificate's client id), if any. */
export function claimed(credential: Credential | undefined): AuditWho {
  return credential !== undefined && (credential.kind === 'basic' || credential.kind === 'certificate') ? { username: credential.clientId } : {};
}

/** A refusal of authentication, or of authorisation; undefined for any other code (bad input, not found). */
export function refusalKind(code: ErrorCode): 'authn' | 'authz' | undefined {
  return code.startsWith('FG_ERR_AUTHN_') ? 'authn' : code.startsWith('FG_ERR_AUTHZ_') ? 'authz' : undefined;
}

/** Where an admission (authenticate, then authorize) was asked for, and what for. */
export interface AdmissionSite {
  readonly protocol: AuditProtocol;
  readonly remote: string;
  readonly credential: Credential | undefined;
  readonly action: AuthzEvent['action'];
  readonly target: string;
}

/**
 * Audits an admission at an edge: a refused credential as authn, a refused right as authn ok + authz (with the
 * principal when the pipeline names it), and a success as authn ok.
 */
export function auditAdmission(audit: Audit, site: AdmissionSite, result: Admitted): void {
  const { protocol, remote, credential, action, target } = site;
  const base = { protocol, remote, credential: credential?.kind ?? 'none' } as const;
  if (result.ok) return audit.authn({ ...base, ...who(result.value.principal), result: 'ok' });
  const kind = refusalKind(result.code);
  if (kind === 'authn') return audit.authn({ ...base, ...claimed(credential), result });
  if (kind !== 'authz') return;
  const principal = 'refused' in result ? who(result.refused) : claimed(credential);
  if ('refused' in result) audit.authn({ ...base, ...principal, result: 'ok' });
  audit.authz({ protocol, remote, ...principal, action, target, failure: result });
}
