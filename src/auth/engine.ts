import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { Dependents, ownersOf } from '../dependents.ts';
import { fail, ok, type Failure, type Result, type Success } from '../errors.ts';
import type { RegistryView } from '../registry/view.ts';
import type { Client } from '../registry/types.ts';
import type { ClientPrincipal, ExternalPrincipal, Principal } from '../types.ts';
import type { Credential } from './credentials.ts';
import type { VerifyOutcome } from './key-material.ts';
import { fillAcl, parseAcl, type AclRule } from './acl.ts';
import { claimAt } from './claims.ts';
import { kMaxTokenLength } from './jwt.ts';
import type { AuthPool } from './pool.ts';
import { authenticateSecret } from './secret-auth.ts';

export interface AuthEngineOptions {
  readonly cacheSize: number;
  /** seconds a verified token stays cached at most (never past its exp) */
  readonly cacheTtl: number;
  /** seconds a refused token stays refused without a new verification */
  readonly negativeTtl: number;
  /**
   * FLEETGATE_JWT_CLOCK_TOLERANCE (s): a token holds until exp + this, here as in the workers, so that the cache, the
   * re-checks and the timer that ends a connection agree with the verification that let it in.
   */
  readonly clockTolerance: number;
  /** claim naming the subject of an external token (DESIGN.md §4.2); this and the next two may be dotted paths */
  readonly subjectClaim: string;
  /** claim carrying channel rights (acl.ts); empty: none */
  readonly aclClaim: string;
  /** claim listing the token's roles (an array, or a space-separated string); empty: none */
  readonly rolesClaim: string;
  /** role -> the rules a token with that role gets, in the order they are checked */
  readonly roleAcl: ReadonlyMap<string, readonly AclRule[]>;
  /** creates a client for a subject that has none (FLEETGATE_OIDC_AUTO_PROVISION); absent: such tokens are refused */
  readonly provisionExternal?: (subject: string) => Promise<Client | undefined>;
  /** refetches the external JWKS (with its own cooldown); true when the keys changed */
  readonly refreshExternalKeys?: () => Promise<boolean>;
  /** called for each token sent to the workers (metrics) */
  readonly onVerify?: () => void;
}

/** fleetgate's token types (DESIGN.md §8). */
export const kTokenType = { access: 0, refresh: 1, recovery: 2, signInState: 3 } as const;

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
      async (outcome) => this.settle(key, await this.principalOf(await this.retryOnNewKeys(credential.token, outcome))),
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
  /**
   * Until when (Unix s) a verified token is still accepted: its exp plus the clock tolerance. A single-use token's
   * "used" mark must live that long, or the token could be replayed in the tolerance after its exp.
   */
  acceptedUntil(claims: Record<string, unknown>): number {
    return Number(claims.exp) + this.options.clockTolerance;
  }

  async verifyOwn(token: string, type: number): Promise<Result<Record<string, unknown>>> {
    const verifying = this.pool.verify(token);
    if (verifying === 'busy') return fail('FG_ERR_AUTHN_BUSY');
    const outcome = await verifying;
    if (!outcome.ok) return fail(outcome.reason === 'expired' ? 'FG_ERR_AUTHN_EXPIRED' : 'FG_ERR_AUTHN_INVALID', outcome.message);
    if (outcome.source !== 'own' || outcome.claims.type !== type) return fail('FG_ERR_AUTHN_INVALID', 'wrong token type');
    return ok(outcome.claims);
  }

  /**
   * An external token naming an unknown key may be signed with a key the provider added since: refetch, retry once.
   * New keys may also mean retired ones: every verified token is forgotten, as for fleetgate's own keys.
   */
  private async retryOnNewKeys(token: string, outcome: VerifyOutcome): Promise<VerifyOutcome> {
    if (outcome.ok || outcome.reason !== 'unknown-kid' || outcome.source !== 'external') return outcome;
    if (!(await this.options.refreshExternalKeys?.())) return outcome;
    this.clear();
    const again = this.pool.verify(token);
    return again === 'busy' ? outcome : again;
  }

  private async principalOf(outcome: VerifyOutcome): Promise<Result<Principal>> {
    if (!outcome.ok) return fail(outcome.reason === 'expired' ? 'FG_ERR_AUTHN_EXPIRED' : 'FG_ERR_AUTHN_INVALID', outcome.message);
    const claims = outcome.claims;
    const expiresAt = ((claims.exp as number) + this.options.clockTolerance) * 1000;
    if (outcome.source === 'external') {
      const subject = claimAt(claims, this.options.subjectClaim);
      if (typeof subject !== 'string') return fail('FG_ERR_AUTHN_INVALID', `token has no "${this.options.subjectClaim}" claim`);
      const rules = this.rulesOf(claims);
      if (!rules.ok) return rules;
      if (rules.value !== undefined) {
        // Outside MQTT there is no client id or username: both placeholders stand for the subject.
        const acl = fillAcl(rules.value, { clientId: subject, username: subject });
        const principal: ExternalPrincipal = { kind: 'external', id: subject, acl, rules: rules.value, expiresAt };
        return this.whyInvalid(principal) ?? ok(principal);
      }
      const client = this.view.clientByExternalId(subject) ?? (await this.options.provisionExternal?.(subject));
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

  /**
   * The rules an external token brings: its ACL claim's, then those of each of its roles in the role table's order
   * (first match decides). undefined when it has neither claim, nor a role the table knows: it then needs a client.
   */
  private rulesOf(claims: Record<string, unknown>): Result<readonly AclRule[] | undefined> {
    const { aclClaim, rolesClaim, roleAcl } = this.options;
    const written = aclClaim === '' ? undefined : claimAt(claims, aclClaim);
    const own = written === undefined ? undefined : parseAcl(written);
    if (typeof own === 'string') return fail('FG_ERR_AUTHN_INVALID', `malformed "${aclClaim}" claim: ${own}`);
    const listed = rolesClaim === '' ? undefined : claimAt(claims, rolesClaim);
    const roles = typeof listed === 'string' ? listed.split(' ') : listed ?? [];
    if (!Array.isArray(roles)) return fail('FG_ERR_AUTHN_INVALID', `malformed "${rolesClaim}" claim`);
    const known = [...roleAcl].filter(([role]) => roles.includes(role));
    if (own === undefined && known.length === 0) return ok(undefined);
    return ok([...(own ?? []), ...known.flatMap(([, rules]) => rules)]);
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
