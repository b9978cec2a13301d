type Headers = readonly (readonly [string, string])[];

export interface CorsPolicy {
  /** headers for a response to a request from `origin`; undefined when the origin is not allowed (the browser blocks) */
  grant(origin: string): Headers | undefined;
  /** headers a preflight adds for an allowed origin: what may be sent, and for how long the answer holds */
  readonly preflight: (allow: string) => Headers;
  /** a listed origin (not `*`): its pages may send credentials, the session cookie included */
  listed(origin: string): boolean;
}

const kAllowHeaders = 'Authorization, Content-Type';
const kMaxAgeSeconds = '600';
// Headers a script may read on a refusal: how long to wait, which scheme to use.
const kExpose = 'Retry-After, WWW-Authenticate';

/**
 * FLEETGATE_CORS_ORIGINS (docs/HTTP.md): each listed origin is echoed with `Access-Control-Allow-Credentials: true`;
 * `*` lets any other origin call without credentials (the Fetch standard ignores `*` on a credentialed request).
 */
export function corsPolicy(origins: readonly string[]): CorsPolicy {
  const listed = new Map<string, Headers>(origins.filter((o) => o !== '*').map((origin) => [origin, [
    ['access-control-allow-origin', origin], ['access-control-allow-credentials', 'true'],
    ['access-control-expose-headers', kExpose], ['vary', 'Origin'],
  ]]));
  const anyOrigin: Headers | undefined = origins.includes('*')
    ? [['access-control-allow-origin', '*'], ['access-control-expose-headers', kExpose], ['vary', 'Origin']]
    : undefined;
  return {
    grant: (origin) => listed.get(origin) ?? anyOrigin,
    preflight: (allow) => [['access-control-allow-methods', allow], ['access-control-allow-headers', kAllowHeaders], ['access-control-max-age', kMaxAgeSeconds]],
    listed: (origin) => listed.has(origin),
  };
}
