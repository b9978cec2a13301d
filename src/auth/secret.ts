import { hash, randomBytes } from 'node:crypto';

/**
 * Client secrets are stored and indexed as sha256 digests (base64url), never as plaintext. A fast digest, not a slow
 * KDF, because a secret-only credential (`Authorization: Client <secret>`) must be found by its digest in an index,
 * which rules out a salt; generated secrets carry 128 random bits, which no offline guessing reaches, and secrets
 * chosen by an operator must be at least kMinSecretLength characters.
 */
export const kMinSecretLength = 16;

export function digestSecret(secret: string): string {
  return hash('sha256', secret, 'base64url');
}

/** A random 128-bit secret, hex: safe in shells, URLs and MQTT passwords. */
export function generateSecret(): string {
  return randomBytes(16).toString('hex');
}
