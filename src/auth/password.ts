import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';

// Runs on the auth workers only (auth/worker.ts), never on the event loop. OWASP's scrypt minimum (N=2^17) costs
// 128 MiB and ~0.3 s here; 2^15 keeps a login under 0.1 s while staying memory-hard.
const kParams = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const kKeyLength = 32;

/** `scrypt$N$r$p$salt$hash` (base64url parts), so parameters can be raised later without breaking old hashes. */
export function hashPassword(password: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, kKeyLength, kParams);
  return ['scrypt', kParams.N, kParams.r, kParams.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

export function verifyPassword(password: string, encoded: string): boolean {
  const [scheme, n, r, p, salt, hash] = encoded.split('$');
  if (scheme !== 'scrypt' || salt === undefined || hash === undefined) return false;
  const expected = Buffer.from(hash, 'base64url');
  const N = Number(n);
  const actual = scryptSync(password, Buffer.from(salt, 'base64url'), expected.length, { N, r: Number(r), p: Number(p), maxmem: 256 * N * Number(r) + kParams.maxmem });
  return timingSafeEqual(actual, expected);
}

/** A valid hash of a password nobody knows: checking against it costs what a real check costs (no user enumeration). */
export const kDummyPasswordHash = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$' + 'A'.repeat(43);
