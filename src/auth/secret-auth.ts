import { timingSafeEqual } from 'node:crypto';
import { fail, ok, type Result } from '../errors.ts';
import type { RegistryView } from '../registry/view.ts';
import type { Principal } from '../types.ts';
import { kCertificateMismatch } from './certificate.ts';
import type { Credential } from './credentials.ts';

/**
 * A client secret (or a verified client certificate) -> principal, synchronously from the registry view: no KDF to offload, since a secret-only
 * credential must be found by its digest (see auth/secret.ts). The Map lookup compares digests, never the secret, so
 * its timing tells nothing about a stored secret; a Basic credential names the client and its digest is compared in
 * constant time.
 */
export function authenticateSecret(view: RegistryView, credential: Exclude<Credential, { kind: 'bearer' }>): Result<Principal> {
  if (credential.kind === 'malformed') return fail('FG_ERR_AUTHN_INVALID', 'malformed authorization');
  if (credential.kind === 'refused') return credential.failure;
  const client = credential.kind === 'secret' ? view.clientBySecretDigest(credential.digest) : view.client(credential.clientId);
  if (client === undefined) return fail('FG_ERR_AUTHN_INVALID');
  if (credential.kind === 'basic' && !sameDigest(credential.digest, client.secretDigest)) return fail('FG_ERR_AUTHN_INVALID');
  if (credential.kind === 'certificate' && credential.digest !== undefined && !sameDigest(credential.digest, client.secretDigest)) {
    return kCertificateMismatch;
  }
  if (client.status !== 'enabled') return fail('FG_ERR_AUTHN_DISABLED');
  return ok({ kind: 'client', id: client.id, domainId: client.domainId, secretDigest: client.secretDigest, expiresAt: null });
}

function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64url');
  const y = Buffer.from(b, 'base64url');
  return x.length === y.length && timingSafeEqual(x, y);
}
