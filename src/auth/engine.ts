import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { Dependents, ownersOf } from '../dependents.ts';
import { fail, ok, type Failure, type Result, type Success } from '../errors.ts';
import type { RegistryView } from '../registry/view.ts';
import type { ClientPrincipal, Principal } from '../types.ts';
import type { Credential } from './credentials.ts';
import type { VerifyOutcome } from './key-material.ts';
import { parseAcl } from './acl.ts';
import { kMaxTokenLength } from './jwt.ts';
import type { AuthPool } from './pool.ts';
import { authenticateSecret } from './secret-auth.ts';

export interface AuthEngineOptions {
  readonly cacheSize: number;
  /** seconds a verified token stays cached at most (never past its exp) */
  readonly cacheTtl: number;
  /** seconds a refused token stays refused without a new verification */
  readonly negativeTtl: number;
  /** claim naming the subject of an external token (DESIGN.md §4.2) */
  readonly subjectClaim: string;
  /** claim carrying channel rights (acl.ts); empty: external tokens map to provisioned clients only */
  readonly aclClaim: string;
  /** refetches the external JWKS (with its own cooldown); true when the keys changed */
  readonly refreshExternalKeys?: () => Promise<boolean>;
  /** called for each token sent to the workers (metrics) */
  readonly onVerify?: () => void;
}

/** fleetgate's token types (DESIGN.md §8). */
export const kTokenType = { access: 0, refresh: 1, recovery: 2 } as const;

/** A verification's outcome, kept as is: a hit hands back this very object (no allocation on the hot path). */
type Entry = Success<Principal> | Failure;

/**
 * authenticate(credential) -> principal, for every ingress. Secrets are answered from the registry view. Tokens are
 * answered from an lru-cache keyed by the token's digest, synchronously, when verified before; otherwise by the worker
 * pool, with concurrent checks of one token sharing one verification and refusals cached briefly, so that a flood of
 * one bad token costs one verification. A full pool answers FG_ERR_AUTHN_BUSY at once.
 * Cached principals are evicted when their user, session or client changes, and all of them when keys change, so
 * revocation bites at once, not after a TTL, and a hit needs no re-check.
 */
export class AuthEngine {
  private readonly view: RegistryView;
  private readonly pool: AuthPool;
  private readonly options: AuthEngineOptions;
  private readonly cache: LRUCache<string, Entry>;
  private readonly inflight = new Map<string, Promise<Result<Principal>>>();
  /** owner (user:, session:, client:) -> cache keys, to evict what a registry change invalidates */
  private readonly byOwner = new Dependents<string>();

  constructor(view: RegistryView, pool: AuthPool, options: AuthEngineOptions) {
    this.view = view;
    this.pool = pool;
    this.options = options;
    this.cache = new LRUCache<string, Entry>({
      max: options.cacheSize,
      ttl: options.cacheTtl * 1000,
      ttlAutopurge: false,
      dispose: (entry, key) => {
        if (entry.ok) for (const owner of ownersOf(entry.value)) this.byOwner.delete(owner, key);
      },
    });
    view.listen({
      userChanged: (id) => this.evict('user:' + id),
      sessionChanged: (id) => this.evict('session:' + id),
      clientChanged: (id) => this.evict('client:' + id),
    });
  }

  authenticate(credential: Credential | undefined): Result<Principal> | Promise<Result<Principal>> {
    if (credential === undefined) return fail('FG_ERR_AUTHN_MISSING');
    if (credential.kind !== 'bearer') return authenticateSecret(this.view, credential);
    // Refused before hashing, caching or any worker: an oversize token costs nothing.
    if (credential.token.length > kMaxTokenLength) return fail('FG_ERR_AUTHN_INVALID', `token longer than ${kMaxTokenLength} characters`);
    const key = hash('sha256', credential.token, 'base64url');
    const entry = this.cache.get(key);
    // No re-check on a hit: whatever would invalidate the entry (user, session, client, keys) evicts it first.
    if (entry !== undefined) return entry;
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const verifying = this.pool.verify(credential.token);
    if (verifying === 'busy') return fail('FG_ERR_AUTHN_BUSY');
    this.options.onVerify?.();
    const result = verifying.then(
      async (outcome) => this.settle(key, this.principalOf(await this.retryOnNewKeys(credential.token, outcome))),
      () => fail('FG_ERR_INTERNAL', 'token verification failed'),
    );
    this.inflight.set(key, result);
    void result.finally(() => this.inflight.delete(key));
    return result;
  }

  /** Forgets every verified token: keys changed (rotation, retirement), so each is verified again with the new set. */
  clear(): void {
    this.cache.clear();
    this.byOwner.clear();
  }

  /** Why a principal no longer holds (a fresh verification, or a live connection after a registry change); undefined: it does. */
  whyInvalid(principal: Principal): Failure | undefined {
    if (principal.expiresAt !== null && principal.expiresAt <= Date.now()) return fail('FG_ERR_AUTHN_EXPIRED');
    if (principal.kind === 'user') {
      const user = this.view.user(principal.id);
      if (user === undefined) return fail('FG_ERR_AUTHN_INVALID', 'user no longer exists');
      if (user.status !== 'enabled') return fail('FG_ERR_AUTHN_DISABLED', 'user is disabled');
      if (this.view.session(principal.sessionId) === undefined) return fail('FG_ERR_AUTHN_INVALID', 'session revoked or expired');
      return undefined;
    }
    // The token is the whole authority of an external principal: only its expiry can end it.
    if (principal.kind === 'external') return undefined;
    const client = this.view.client(principal.id);
    if (client === undefined) return fail('FG_ERR_AUTHN_INVALID', 'client no longer exists');
    if (principal.secretDigest !== null && client.secretDigest !== principal.secretDigest) return fail('FG_ERR_AUTHN_INVALID', 'secret rotated');
    if (client.status !== 'enabled') return fail('FG_ERR_AUTHN_DISABLED');
    return undefined;
  }

  /** Verifies a fleetgate token of a given type without caching it (refresh, recovery: rare, and single use). */
  async verifyOwn(token: string, type: number): Promise<Result<Record<string, unknown>>> {
    const verifying = this.pool.verify(token);
    if (verifying === 'busy') return fail('FG_ERR_AUTHN_BUSY');
    const outcome = await verifying;
    if (!outcome.ok) return fail(outcome.reason === 'expired' ? 'FG_ERR_AUTHN_EXPIRED' : 'FG_ERR_AUTHN_INVALID', outcome.message);
    if (outcome.source !== 'own' || outcome.claims.type !== type) return fail('FG_ERR_AUTHN_INVALID', 'wrong token type');
    return ok(outcome.claims);
  }

  /** An external token naming an unknown key may be signed with a key the provider added since: refetch, retry once. */
  private async retryOnNewKeys(token: string, outcome: VerifyOutcome): Promise<VerifyOutcome> {
    if (outcome.ok || outcome.reason !== 'unknown-kid' || outcome.source !== 'external') return outcome;
    if (!(await this.options.refreshExternalKeys?.())) return outcome;
    const again = this.pool.verify(token);
    return again === 'busy' ? outcome : again;
  }

  private principalOf(outcome: VerifyOutcome): Result<Principal> {
    if (!outcome.ok) return fail(outcome.reason === 'expired' ? 'FG_ERR_AUTHN_EXPIRED' : 'FG_ERR_AUTHN_INVALID', outcome.message);
    const claims = outcome.claims;
    const expiresAt = (claims.exp as number) * 1000;
    if (outcome.source === 'external') {
      const subject = claims[this.options.subjectClaim];
      if (typeof subject !== 'string') return fail('FG_ERR_AUTHN_INVALID', `token has no "${this.options.subjectClaim}" claim`);
      if (this.options.aclClaim !== '' && claims[this.options.aclClaim] !== undefined) {
        // Outside MQTT there is no client id or username: both placeholders stand for the subject.
        const acl = parseAcl(claims[this.options.aclClaim], { clientId: subject, username: subject });
        if (acl === undefined) return fail('FG_ERR_AUTHN_INVALID', `malformed "${this.options.aclClaim}" claim`);
        return ok({ kind: 'external', id: subject, acl, aclClaim: claims[this.options.aclClaim], expiresAt });
      }
      const client = this.view.clientByExternalId(subject);
      if (client === undefined) return fail('FG_ERR_AUTHN_INVALID', 'no client is provisioned for this token subject');
      const principal: ClientPrincipal = { kind: 'client', id: client.id, domainId: client.domainId, secretDigest: null, expiresAt, subject };
      return this.whyInvalid(principal) ?? ok(principal);
    }
    // A refresh or recovery token is never an access token.
    if (claims.type !== kTokenType.access) return fail('FG_ERR_AUTHN_INVALID', 'not an access token');
    if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') return fail('FG_ERR_AUTHN_INVALID', 'token lacks sub or sid');
    const principal: Principal = { kind: 'user', id: claims.sub, sessionId: claims.sid, expiresAt };
    return this.whyInvalid(principal) ?? ok(principal);
  }

  private settle(key: string, result: Result<Principal>): Result<Principal> {
    if (result.ok) {
      const ttl = Math.min(this.options.cacheTtl * 1000, result.value.expiresAt! - Date.now());
      if (ttl > 0) {
        this.cache.set(key, result, { ttl });
        for (const owner of ownersOf(result.value)) this.byOwner.add(owner, key);
      }
    } else if (result.code !== 'FG_ERR_INTERNAL') {
      this.cache.set(key, result, { ttl: this.options.negativeTtl * 1000 });
    }
    return result;
  }

  private evict(owner: string): void {
    for (const key of this.byOwner.take(owner)) this.cache.delete(key);
  }

}
