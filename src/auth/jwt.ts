import { createHmac, createPrivateKey, createPublicKey, createSecretKey, sign, timingSafeEqual, verify, type JsonWebKey, type KeyObject } from 'node:crypto';

/**
 * Compact JWS/JWT (RFC 7515/7519) with node:crypto, for the auth workers. Not jose: its WebCrypto path verifies
 * 1.5-3x slower than node:crypto here (DESIGN.md §12), and verification is the cold path's whole cost.
 * Safety rules: the algorithm is pinned per key (a token's `alg` must equal its key's, so HS/RS confusion and `none`
 * cannot pass), keys come only from configured key sets (`jku`, `x5u`, `jwk` headers are never read), an unknown
 * `crit` header refuses the token, and an oversize token is refused before any crypto.
 */

export const kJwtAlgorithms = ['EdDSA', 'ES256', 'ES384', 'RS256', 'RS384', 'RS512', 'PS256', 'HS256', 'HS384', 'HS512'] as const;
export type JwtAlgorithm = (typeof kJwtAlgorithms)[number];

/** RFC 7519 claims plus fleetgate's own (`type`, `sid`); anything else stays in the object. */
export interface JwtClaims {
  readonly iss?: string;
  readonly sub?: string;
  readonly aud?: string | string[];
  readonly exp?: number;
  readonly nbf?: number;
  readonly iat?: number;
  readonly jti?: string;
  readonly [claim: string]: unknown;
}

export interface VerifyKey {
  readonly kid: string | undefined;
  readonly alg: JwtAlgorithm;
  readonly key: KeyObject;
}

export interface ClaimRules {
  readonly issuer: string;
  readonly audience: string | undefined;
  /** seconds since the epoch */
  readonly now: number;
  readonly clockTolerance: number;
}

export type JwtFailure = { readonly ok: false; readonly reason: 'malformed' | 'algorithm' | 'unknown-kid' | 'signature' | 'expired' | 'not-yet-valid' | 'issuer' | 'audience' | 'too-large'; readonly message: string };
export type JwtResult = { readonly ok: true; readonly claims: JwtClaims; readonly kid: string | undefined } | JwtFailure;

export const kMaxTokenLength = 8192;

const kDigest: Record<JwtAlgorithm, string | null> = {
  EdDSA: null, ES256: 'sha256', ES384: 'sha384', RS256: 'sha256', RS384: 'sha384', RS512: 'sha512', PS256: 'sha256',
  HS256: 'sha256', HS384: 'sha384', HS512: 'sha512',
};

const failure = (reason: JwtFailure['reason'], message: string): JwtFailure => ({ ok: false, reason, message });

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const kBase64Url = /^[A-Za-z0-9_-]+$/;

/** A compact JWS taken apart, nothing verified yet: its claims may only choose which keys and rules to verify with. */
export interface DecodedJws {
  readonly ok: true;
  readonly parts: readonly [string, string, string];
  readonly header: Record<string, unknown>;
  readonly claims: JwtClaims;
}

export function decodeJws(token: string): DecodedJws | JwtFailure {
  if (token.length > kMaxTokenLength) return failure('too-large', `token longer than ${kMaxTokenLength} characters`);
  const parts = token.split('.');
  if (parts.length !== 3 || !kBase64Url.test(parts[0]!) || !kBase64Url.test(parts[1]!) || !kBase64Url.test(parts[2]!)) {
    return failure('malformed', 'not a compact JWS');
  }
  const header = decodeJson(parts[0]!);
  if (header === undefined || typeof header.alg !== 'string') return failure('malformed', 'bad JOSE header');
  if (header.crit !== undefined) return failure('malformed', 'unsupported critical header');
  const claims = decodeJson(parts[1]!) as JwtClaims | undefined;
  if (claims === undefined) return failure('malformed', 'bad claims');
  return { ok: true, parts: parts as [string, string, string], header, claims };
}

/** Verifies signature and claims; `keys` is the only source of keys. */
export function verifyJwt(token: string, keys: (kid: string | undefined) => VerifyKey | undefined, rules: ClaimRules): JwtResult {
  const jws = decodeJws(token);
  return jws.ok ? verifyDecoded(jws, keys, rules) : jws;
}

export function verifyDecoded({ parts, header, claims }: DecodedJws, keys: (kid: string | undefined) => VerifyKey | undefined, rules: ClaimRules): JwtResult {
  const kid = typeof header.kid === 'string' ? header.kid : undefined;
  const key = keys(kid);
  if (key === undefined) return failure('unknown-kid', kid === undefined ? 'token names no key' : `unknown key "${kid}"`);
  // Pinned: the key decides the algorithm, the token only has to agree with it.
  if (header.alg !== key.alg) return failure('algorithm', `algorithm ${header.alg} not allowed for this key`);
  const signingInput = Buffer.from(parts[0] + '.' + parts[1]);
  const signature = Buffer.from(parts[2], 'base64url');
  if (!checkSignature(key, signingInput, signature)) return failure('signature', 'bad signature');
  const problem = checkClaims(claims, rules);
  return problem ?? { ok: true, claims, kid };
}

function checkSignature(key: VerifyKey, data: Buffer, signature: Buffer): boolean {
  const digest = kDigest[key.alg];
  switch (key.alg) {
    case 'HS256':
    case 'HS384':
    case 'HS512': {
      const expected = createHmac(digest!, key.key).update(data).digest();
      return expected.length === signature.length && timingSafeEqual(expected, signature);
    }
    case 'ES256':
    case 'ES384':
      return verify(digest, data, { key: key.key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'PS256':
      return verify(digest, data, { key: key.key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 }, signature);
    default:
      return verify(digest, data, key.key, signature);
  }
}

function checkClaims(claims: JwtClaims, rules: ClaimRules): JwtFailure | undefined {
  const { now, clockTolerance: skew } = rules;
  if (typeof claims.exp !== 'number') return failure('malformed', 'token has no exp');
  if (now - skew >= claims.exp) return failure('expired', 'token expired');
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now + skew < claims.nbf)) return failure('not-yet-valid', 'token not yet valid');
  if (claims.iss !== rules.issuer) return failure('issuer', 'unexpected issuer');
  if (rules.audience !== undefined) {
    const aud = claims.aud;
    if (!(aud === rules.audience || (Array.isArray(aud) && aud.includes(rules.audience)))) return failure('audience', 'unexpected audience');
  }
  return undefined;
}

export interface SigningKey {
  readonly kid: string;
  readonly alg: JwtAlgorithm;
  readonly key: KeyObject;
}

export function signJwt(claims: JwtClaims, key: SigningKey): string {
  const header = Buffer.from(JSON.stringify({ alg: key.alg, typ: 'JWT', kid: key.kid })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const data = Buffer.from(header + '.' + payload);
  const digest = kDigest[key.alg];
  let signature: Buffer;
  switch (key.alg) {
    case 'HS256':
    case 'HS384':
    case 'HS512':
      signature = createHmac(digest!, key.key).update(data).digest();
      break;
    case 'ES256':
    case 'ES384':
      signature = sign(digest, data, { key: key.key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'PS256':
      signature = sign(digest, data, { key: key.key, padding: 6, saltLength: 32 });
      break;
    default:
      signature = sign(digest, data, key.key);
  }
  return header + '.' + payload + '.' + signature.toString('base64url');
}

/** A JWK as it travels to the workers: plain JSON, with the algorithm it is pinned to. */
export interface KeyJwk extends JsonWebKey {
  readonly kid: string;
  readonly alg: JwtAlgorithm;
}

/** The algorithm a JWK may verify: its `alg` if set, else the one its key type implies (RFC 7518), else none. */
export function algorithmOf(jwk: JsonWebKey): JwtAlgorithm | undefined {
  if (typeof jwk.alg === 'string') return (kJwtAlgorithms as readonly string[]).includes(jwk.alg) ? (jwk.alg as JwtAlgorithm) : undefined;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return 'ES384';
  return undefined; // RSA and oct keys name no single algorithm: without `alg` they are not trusted
}

export function importVerifyKey(jwk: KeyJwk): VerifyKey {
  const key = jwk.kty === 'oct' ? createSecretKey(Buffer.from(jwk.k!, 'base64url')) : createPublicKey({ key: publicPart(jwk), format: 'jwk' });
  return { kid: jwk.kid, alg: jwk.alg, key };
}

export function importSigningKey(jwk: KeyJwk): SigningKey {
  const key = jwk.kty === 'oct' ? createSecretKey(Buffer.from(jwk.k!, 'base64url')) : createPrivateKey({ key: jwk, format: 'jwk' });
  return { kid: jwk.kid, alg: jwk.alg, key };
}

/** Drops private members, so that a private JWK can be used for verification and published in a JWKS. */
export function publicPart(jwk: KeyJwk): KeyJwk {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, k: _k, ...pub } = jwk;
  return pub as KeyJwk;
}
