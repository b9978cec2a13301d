import { LRUCache } from 'lru-cache';
import { fail, type ErrorCode, type Failure, type Result } from '../errors.ts';
import type { Protocol } from '../types.ts';
import type { Credential } from './credentials.ts';

/** The failure limits of docs/RATE-LIMITS.md (times in seconds). */
export interface AuthLimitOptions {
  readonly enabled: boolean;
  readonly window: number;
  /** failures of one account from one address that block that pair */
  readonly accountFailures: number;
  /** failures from one address, whatever the account, that block the address */
  readonly addressFailures: number;
  readonly backoff: number;
  readonly maxBackoff: number;
  /** entries of each table (LRU) */
  readonly entries: number;
}

/** A rate-limit action as logged and audited: who and for how long, never a credential. */
export interface LimitAction {
  /** block: a block begins; refuse: an attempt during a block was refused unchecked */
  readonly action: 'block' | 'refuse';
  readonly protocol: Protocol;
  readonly address: string;
  /** `client:<id>` or `user:<login>`; undefined for a secret that names no client */
  readonly account: string | undefined;
  /** which limit: the address's, or the account's from that address */
  readonly scope: 'address' | 'account';
  /** seconds until the block ends */
  readonly retryAfter: number;
  readonly code: ErrorCode;
}

interface Tally {
  /** failures counted since `since` */
  failures: number;
  since: number;
  /** end of the current or last block (ms), 0 if none */
  until: number;
  /** blocks in a row: each lasts twice the one before */
  strikes: number;
}

// An account that got in from an address keeps getting in from it while the address is blocked for others' failures
// (devices behind one NAT), for this long after its last success.
const kTrustedFor = 24 * 60 * 60 * 1000;

/**
 * The account a guessable credential names: `client:<id>` for Basic, null for a secret that names none (or a malformed
 * one); undefined for what is not limited (tokens, certificates, nothing).
 */
export function accountOf(credential: Credential | undefined): string | null | undefined {
  if (credential?.kind === 'basic') return 'client:' + credential.clientId;
  return credential?.kind === 'secret' || credential?.kind === 'malformed' ? null : undefined;
}

/** `::ffff:127.0.0.1` (a dual-stack socket) and `127.0.0.1` are one address. */
function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * Failure limits with backoff, in the manner of fail2ban and Keycloak's brute-force detection: per address, and per
 * (account, address) pair, never per account alone, so that failures from one address cannot lock an account out
 * of another (docs/RATE-LIMITS.md). Every check is a synchronous lookup made before any verification, so a refused
 * attempt costs nothing; memory is bounded by LRU tables whose entries expire with their window.
 */
export class AuthLimiter {
  private readonly options: AuthLimitOptions;
  private readonly report: (action: LimitAction) => void;
  private readonly windowMs: number;
  private readonly addresses: LRUCache<string, Tally>;
  private readonly pairs: LRUCache<string, Tally>;
  /** pairs that succeeded lately: exempt from their address's block */
  private readonly trusted: LRUCache<string, true>;

  constructor(options: AuthLimitOptions, report: (action: LimitAction) => void) {
    this.options = options;
    this.report = report;
    this.windowMs = options.window * 1000;
    const table = () => new LRUCache<string, Tally>({ max: options.entries, ttl: this.windowMs, ttlAutopurge: false });
    this.addresses = table();
    this.pairs = table();
    this.trusted = new LRUCache<string, true>({ max: options.entries, ttl: kTrustedFor, ttlAutopurge: false });
  }

  /**
   * Runs `attempt` (an authentication that answers at once for secrets) unless a limit refuses it first, then counts
   * its outcome. `address` is read only when needed: text formatting of addresses is not free on the hot path.
   */
  guard<T>(protocol: Protocol, credential: Credential | undefined, address: () => string, attempt: () => Result<T> | Promise<Result<T>>): Result<T> | Promise<Result<T>> {
    const account = this.options.enabled ? accountOf(credential) : undefined;
    if (account === undefined) return attempt();
    let from: string | undefined;
    const at = (): string => (from ??= address());
    const named = account ?? undefined;
    // A bare secret with no block anywhere, the common case, needs no address.
    if (named !== undefined || this.addresses.size > 0) {
      const refused = this.check(protocol, named, at());
      if (refused !== undefined) return refused;
    }
    const result = attempt();
    if (!(result instanceof Promise)) return this.settle(protocol, named, at, result);
    const fixed = at();
    return result.then((r) => this.settle(protocol, named, () => fixed, r));
  }

  /** FG_ERR_RATE_LIMITED when `account` from `address`, or `address` itself, is blocked; else undefined. */
  check(protocol: Protocol, account: string | undefined, peer: string): Failure | undefined {
    const address = normalizeAddress(peer);
    if (!this.options.enabled || address === '') return undefined;
    const now = Date.now();
    const pair = account === undefined ? undefined : pairKey(account, address);
    let scope: LimitAction['scope'] = 'account';
    let left = pair === undefined || this.pairs.size === 0 ? 0 : blockedFor(this.pairs.get(pair), now);
    if (left === 0 && this.addresses.size > 0 && (pair === undefined || !this.trusted.has(pair))) {
      scope = 'address';
      left = blockedFor(this.addresses.get(address), now);
    }
    if (left === 0) return undefined;
    const retryAfter = Math.ceil(left / 1000);
    this.report({ action: 'refuse', protocol, address, account, scope, retryAfter, code: 'FG_ERR_RATE_LIMITED' });
    return fail('FG_ERR_RATE_LIMITED', undefined, { retry_after: retryAfter });
  }

  /** Counts an attempt's outcome: a wrong credential is a failure; a success clears its pair and trusts it. */
  settle<T>(protocol: Protocol, account: string | undefined, address: () => string, result: Result<T>): Result<T> {
    if (result.ok) {
      if (account !== undefined) this.succeeded(account, address());
    } else if (result.code === 'FG_ERR_AUTHN_INVALID') {
      this.failed(protocol, account, address());
    }
    return result;
  }

  private succeeded(account: string, peer: string): void {
    const address = normalizeAddress(peer);
    if (!this.options.enabled || address === '') return;
    const pair = pairKey(account, address);
    if (this.pairs.size > 0) this.pairs.delete(pair);
    // Not refreshed on every success (the hot path): trust lasts from the first success of a day.
    if (!this.trusted.has(pair)) this.trusted.set(pair, true);
  }

  private failed(protocol: Protocol, account: string | undefined, peer: string): void {
    const address = normalizeAddress(peer);
    if (!this.options.enabled || address === '') return;
    const now = Date.now();
    const onAddress = this.count(this.addresses, address, this.options.addressFailures, now);
    if (onAddress > 0) this.block(protocol, account, address, 'address', onAddress);
    if (account === undefined) return;
    const onPair = this.count(this.pairs, pairKey(account, address), this.options.accountFailures, now);
    if (onPair > 0) this.block(protocol, account, address, 'account', onPair);
  }

  private block(protocol: Protocol, account: string | undefined, address: string, scope: LimitAction['scope'], ms: number): void {
    this.report({ action: 'block', protocol, address, account, scope, retryAfter: Math.ceil(ms / 1000), code: 'FG_ERR_RATE_LIMITED' });
  }

  /**
   * One more failure for `key`; the length of the block it starts (ms), or 0. Failures are counted over a window
   * from the first; reaching `threshold` blocks for backoff × 2^(blocks in a row), up to the cap. After a block one
   * failure more, within a window of its end, blocks again (twice as long); a window without failures forgets all.
   */
  private count(table: LRUCache<string, Tally>, key: string, threshold: number, now: number): number {
    const tally = table.get(key) ?? { failures: 0, since: now, until: 0, strikes: 0 };
    if (now - tally.since > this.windowMs) {
      if (now - tally.until > this.windowMs) tally.strikes = 0;
      tally.failures = 0;
      tally.since = now;
    }
    let ms = 0;
    if (++tally.failures >= threshold) {
      ms = Math.min(this.options.backoff * 2 ** tally.strikes, this.options.maxBackoff) * 1000;
      tally.strikes++;
      tally.until = now + ms;
      tally.failures = threshold - 1;
      tally.since = tally.until;
    }
    // At least 1 ms: a ttl of 0 would mean no expiry.
    table.set(key, tally, { ttl: Math.max(1, tally.since + this.windowMs - now) });
    return ms;
  }
}

function pairKey(account: string, address: string): string {
  return account + '\n' + address;
}

function blockedFor(tally: Tally | undefined, now: number): number {
  return tally !== undefined && tally.until > now ? tally.until - now : 0;
}

