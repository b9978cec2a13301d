import { timingSafeEqual } from 'node:crypto';
import type { Credential } from '../auth/credentials.ts';
import { fail, ok, type Result } from '../errors.ts';
import type { RegistryView } from '../registry/view.ts';
import type { Principal } from '../types.ts';

/**
 * Stage 2, authenticate: credential -> principal, answered synchronously from the in-memory registry view.
 * A secret-only credential is found by its digest: the Map lookup compares digests, never the secret, so its timing
 * tells an attacker nothing about any stored secret. A Basic credential names the client, and its digest is compared
 * in constant time.
 */
export function authenticate(view: RegistryView, credential: Credential | undefined): Result<Principal> {
  if (credential === undefined) return fail('FG_ERR_AUTHN_MISSING');
  if (credential.kind === 'malformed') return fail('FG_ERR_AUTHN_INVALID', 'malformed authorization');
  const client = credential.kind === 'secret' ? view.clientBySecretDigest(credential.digest) : view.client(credential.clientId);
  if (client === undefined) return fail('FG_ERR_AUTHN_INVALID');
  if (credential.kind === 'basic' && !sameDigest(credential.digest, client.secretDigest)) return fail('FG_ERR_AUTHN_INVALID');
  if (client.status !== 'enabled') return fail('FG_ERR_AUTHN_DISABLED');
  return ok({ clientId: client.id, domainId: client.domainId });
}

function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64url');
  const y = Buffer.from(b, 'base64url');
  return x.length === y.length && timingSafeEqual(x, y);
}
