import type { Logger } from '../log.ts';
import { algorithmOf, type KeyJwk } from './jwt.ts';
import type { KeyRing } from './keys.ts';

export interface OidcOptions {
  readonly issuer: string;
  /** empty: discovered */
  readonly jwksUrl: string;
  readonly audience: string;
  /** seconds between two refetches */
  readonly cooldown: number;
}

const kFetchTimeout = 5000;

/**
 * The external identity provider's keys (DESIGN.md §4.2): discovered from `<issuer>/.well-known/openid-configuration`
 * (or a configured JWKS URL), fetched once per process and handed to the workers through the key ring; refetched when
 * a token names an unknown key, at most once per cooldown, so that a flood of bogus kids cannot hammer the provider.
 * Each key keeps the one algorithm it declares (or its type implies); keys that name none are not trusted.
 * A provider that cannot be reached at start does not stop the gateway: its tokens are refused until it answers.
 */
export class OidcKeys {
  private readonly options: OidcOptions;
  private readonly ring: KeyRing;
  private readonly logger: Logger;
  private lastFetch = 0;
  private fetching: Promise<boolean> | undefined;
  private seen = '';

  constructor(options: OidcOptions, ring: KeyRing, logger: Logger) {
    this.options = options;
    this.ring = ring;
    this.logger = logger;
  }

  /** Fetches now if the cooldown allows; true when the key set changed. Concurrent calls share one fetch. */
  refresh(): Promise<boolean> {
    if (this.fetching !== undefined) return this.fetching;
    if (Date.now() - this.lastFetch < this.options.cooldown * 1000) return Promise.resolve(false);
    this.lastFetch = Date.now();
    this.fetching = this.fetchKeys().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async fetchKeys(): Promise<boolean> {
    const { issuer, audience } = this.options;
    try {
      const jwksUrl = this.options.jwksUrl || (await getJson(issuer.replace(/\/$/, '') + '/.well-known/openid-configuration')).jwks_uri;
      if (typeof jwksUrl !== 'string') throw new Error('discovery document has no jwks_uri');
      const jwks = await getJson(jwksUrl);
      const keys: KeyJwk[] = [];
      for (const jwk of Array.isArray(jwks.keys) ? (jwks.keys as KeyJwk[]) : []) {
        const alg = algorithmOf(jwk);
        if (alg === undefined || alg.startsWith('HS') || (jwk.use !== undefined && jwk.use !== 'sig')) continue;
        keys.push({ ...jwk, kid: jwk.kid, alg });
      }
      const fingerprint = JSON.stringify(keys);
      if (fingerprint === this.seen) return false;
      this.seen = fingerprint;
      this.ring.setExternal({ issuer, audience: audience || undefined, keys });
      this.logger.info({ issuer, keys: keys.map((k) => k.kid) }, 'identity provider keys loaded');
      return true;
    } catch (err) {
      this.logger.warn({ issuer, err: (err as Error).message }, 'identity provider keys could not be fetched');
      return false;
    }
  }
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(kFetchTimeout), headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}
