import type { Failure } from '../errors.ts';
import { digestSecret } from './secret.ts';

/**
 * A credential as the pipeline sees it. A secret is digested as soon as it is read and never kept; a bearer token is
 * kept only until it is verified (the auth cache is keyed by its digest).
 */
export type Credential =
  | { readonly kind: 'secret'; readonly digest: string }
  | { readonly kind: 'basic'; readonly clientId: string; readonly digest: string }
  | { readonly kind: 'bearer'; readonly token: string }
  /** a verified client certificate whose CN is the client id; `digest`: a secret sent alongside, which must be its own */
  | { readonly kind: 'certificate'; readonly clientId: string; readonly digest?: string }
  | { readonly kind: 'malformed' }
  /** known bad before any lookup, for the reason given (a refused client certificate, say) */
  | { readonly kind: 'refused'; readonly failure: Failure };

// A compact JWS: three base64url parts, the header a JSON object ("eyJ" is base64url for '{"').
const kJwtShape = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

const kMalformed: Credential = { kind: 'malformed' };

/**
 * DESIGN.md §4: `Client <secret>` (and the Mainflux `Thing <secret>`), `Basic base64(clientId:secret)`,
 * `Bearer <jwt>`, a bare JWT, or a bare secret. Returns undefined when there is no credential at all.
 */
export function credentialFromAuthorization(value: string): Credential | undefined {
  const header = value.trim();
  if (header.length === 0) return undefined;
  const space = header.indexOf(' ');
  if (space > 0) {
    const scheme = header.slice(0, space).toLowerCase();
    const rest = header.slice(space + 1).trim();
    if (scheme === 'client' || scheme === 'thing') return rest.length > 0 ? { kind: 'secret', digest: digestSecret(rest) } : kMalformed;
    if (scheme === 'basic') return basic(rest);
    if (scheme === 'bearer') return rest.length > 0 ? { kind: 'bearer', token: rest } : kMalformed;
  }
  // A bare JWT (an MQTT password, a WebSocket ?authorization=) is a bearer token, not a secret.
  if (kJwtShape.test(header)) return { kind: 'bearer', token: header };
  return { kind: 'secret', digest: digestSecret(header) };
}

function basic(encoded: string): Credential {
  const parts = decodeBasic(encoded);
  return parts === undefined || parts.password.length === 0
    ? kMalformed
    : { kind: 'basic', clientId: parts.user, digest: digestSecret(parts.password) };
}

/** `Basic base64(user:password)` split into its parts (admin API), or undefined. */
export function basicUserPassword(value: string): { user: string; password: string } | undefined {
  const match = /^\s*basic\s+(\S+)\s*$/i.exec(value);
  return match === null ? undefined : decodeBasic(match[1]!);
}

function decodeBasic(encoded: string): { user: string; password: string } | undefined {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon > 0 ? { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) } : undefined;
}
