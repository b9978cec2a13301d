/**
 * The one error registry. Every refusal fleetgate gives carries a stable `FG_ERR_*` code; this table maps it to
 * what each protocol says. docs/ERRORS.md documents each code and test/unit/errors.test.ts keeps the two in sync.
 *
 * `mqtt` is the MQTT 3.1.1 CONNACK return code when the refusal happens at CONNECT, or null when 3.1.1 can only close
 * the connection; `mqtt5` is the MQTT 5 reason code.
 */
export interface ErrorSpec {
  readonly status: number;
  readonly ws: number;
  readonly mqtt: number | null;
  readonly mqtt5: number;
  readonly message: string;
}

export const kErrors = {
  FG_ERR_AUTHN_MISSING: { status: 401, ws: 1008, mqtt: 4, mqtt5: 0x86, message: 'credentials required' },
  FG_ERR_AUTHN_INVALID: { status: 401, ws: 1008, mqtt: 4, mqtt5: 0x86, message: 'invalid credentials' },
  FG_ERR_AUTHN_DISABLED: { status: 401, ws: 1008, mqtt: 4, mqtt5: 0x86, message: 'client is disabled' },
  FG_ERR_AUTHN_EXPIRED: { status: 401, ws: 1008, mqtt: 4, mqtt5: 0x86, message: 'token expired' },
  FG_ERR_AUTHN_BUSY: { status: 503, ws: 1013, mqtt: 3, mqtt5: 0x89, message: 'authentication is saturated: retry shortly' },
  FG_ERR_RATE_LIMITED: { status: 429, ws: 1008, mqtt: 5, mqtt5: 0x97, message: 'too many failed attempts: retry later' },
  FG_ERR_AUTHZ_FORBIDDEN: { status: 403, ws: 1008, mqtt: 5, mqtt5: 0x87, message: 'not allowed' },
  FG_ERR_NOT_FOUND: { status: 404, ws: 1008, mqtt: null, mqtt5: 0x90, message: 'not found' },
  FG_ERR_PARSE_TOPIC: { status: 400, ws: 1008, mqtt: null, mqtt5: 0x90, message: 'malformed topic or path' },
  FG_ERR_PARSE_MEDIA_TYPE: { status: 415, ws: 1003, mqtt: null, mqtt5: 0x99, message: 'unsupported content type' },
  FG_ERR_PARSE_EMPTY: { status: 400, ws: 1007, mqtt: null, mqtt5: 0x99, message: 'empty payload' },
  FG_ERR_PARSE_TOO_LARGE: { status: 413, ws: 1009, mqtt: null, mqtt5: 0x95, message: 'payload too large' },
  FG_ERR_PAYLOAD_MALFORMED: { status: 400, ws: 1007, mqtt: null, mqtt5: 0x99, message: 'payload does not decode as the channel format' },
  FG_ERR_SENML_INVALID: { status: 400, ws: 1007, mqtt: null, mqtt5: 0x99, message: 'invalid SenML' },
  FG_ERR_REQUEST_INVALID: { status: 400, ws: 1008, mqtt: null, mqtt5: 0x81, message: 'invalid request' },
  FG_ERR_CONFLICT: { status: 409, ws: 1008, mqtt: null, mqtt5: 0x80, message: 'already exists' },
  FG_ERR_PROXY_UNTRUSTED: { status: 403, ws: 1008, mqtt: null, mqtt5: 0x87, message: 'PROXY header from an address not in FLEETGATE_TRUSTED_PROXIES' },
  FG_ERR_ROUTE_NOT_FOUND: { status: 404, ws: 1008, mqtt: null, mqtt5: 0x80, message: 'no such route' },
  FG_ERR_SLOW_CONSUMER: { status: 503, ws: 1013, mqtt: null, mqtt5: 0x97, message: 'subscriber too slow: messages dropped' },
  FG_ERR_SHUTTING_DOWN: { status: 503, ws: 1001, mqtt: 3, mqtt5: 0x8b, message: 'server shutting down' },
  FG_ERR_INTERNAL: { status: 500, ws: 1011, mqtt: null, mqtt5: 0x80, message: 'internal error' },
  FG_ERR_SIGN_IN_FAILED: { status: 303, ws: 1008, mqtt: null, mqtt5: 0x80, message: 'sign-in failed' },
  FG_ERR_METHOD_NOT_ALLOWED: { status: 405, ws: 1008, mqtt: null, mqtt5: 0x80, message: 'method not allowed on this path' },
  FG_ERR_REQUEST_FRAMING: { status: 400, ws: 1002, mqtt: null, mqtt5: 0x81, message: 'ambiguous request framing' },
  FG_ERR_TRANSFER_CODING: { status: 501, ws: 1002, mqtt: null, mqtt5: 0x81, message: 'unsupported transfer coding' },
  FG_ERR_CONFIG_INVALID: { status: 500, ws: 1011, mqtt: null, mqtt5: 0x80, message: 'invalid configuration' },
  FG_ERR_STORE_UNAVAILABLE: { status: 503, ws: 1013, mqtt: 3, mqtt5: 0x89, message: 'registry store unavailable: retry shortly' },
  FG_ERR_MQTT_STATE_UNAVAILABLE: { status: 503, ws: 1013, mqtt: 3, mqtt5: 0x88, message: 'MQTT session store unavailable: retry shortly' },
  FG_ERR_STORE_FULL: { status: 507, ws: 1011, mqtt: 3, mqtt5: 0x97, message: 'registry store is full' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof kErrors;

/** A refusal as a plain value: the hot path returns these instead of throwing (no stack capture, no try/catch). */
export interface Failure {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface Success<T> {
  readonly ok: true;
  readonly value: T;
}

export type Result<T> = Success<T> | Failure;

export function ok<T>(value: T): Success<T> {
  return { ok: true, value };
}

export function fail(code: ErrorCode, message?: string, detail?: Record<string, unknown>): Failure {
  return detail === undefined
    ? { ok: false, code, message: message ?? kErrors[code].message }
    : { ok: false, code, message: message ?? kErrors[code].message, detail };
}

/** The JSON error body every HTTP error carries: `{code, message, ...detail}`. */
export function errorBody(failure: Failure): string {
  return JSON.stringify({ code: failure.code, message: failure.message, ...failure.detail });
}

/** Thrown, never returned: configuration and programmer errors, and failures in async service calls. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly detail: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message?: string, detail?: Record<string, unknown>) {
    super(message ?? kErrors[code].message);
    this.name = 'GatewayError';
    this.code = code;
    this.detail = detail;
  }

  toFailure(): Failure {
    return fail(this.code, this.message, this.detail as Record<string, unknown> | undefined);
  }
}
