import { generateKeyPairSync, hash, randomUUID, type JsonWebKey } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import type { Store } from '../registry/store.ts';
import { publicPart, type JwtAlgorithm, type KeyJwk } from './jwt.ts';
import { isSealed, type KeyCipher } from './key-encryption.ts';
import type { KeyMaterial } from './key-material.ts';

export type SigningAlgorithm = 'EdDSA' | 'ES256' | 'HS256' | 'HS384' | 'HS512';

export interface KeyRingOptions {
  readonly algorithm: SigningAlgorithm;
  /** HS* only: the shared secret (never stored) */
  readonly secret: string;
  readonly issuer: string;
  readonly clockTolerance: number;
  /** seals the private keys in the store (key-encryption.ts) */
  readonly cipher: KeyCipher;
}

/**
 * fleetgate's own token keys. Asymmetric keys (EdDSA default, ES256) are generated on first start and kept in the
 * store, so every process on the same store signs and verifies alike; `fleetgate keys rotate` adds a new active key
 * and keeps the old one verifying ("retiring") until `fleetgate keys retire`. HS* uses FLEETGATE_JWT_SECRET.
 * Private keys are stored sealed (key-encryption.ts); a key stored plain by an older version is sealed on load.
 */
export class KeyRing {
  private readonly store: Store;
  private readonly options: KeyRingOptions;
  private own: { signing: KeyJwk; verify: KeyJwk[] } | undefined;
  private external: KeyMaterial['external'] = null;
  private version = 0;
  private readonly listeners: ((material: KeyMaterial) => void)[] = [];

  constructor(store: Store, options: KeyRingOptions) {
    this.store = store;
    this.options = options;
  }

  /** Loads the keys, creating the first one when there is none for the configured algorithm. */
  async load(): Promise<void> {
    const { algorithm, secret, cipher } = this.options;
    await sealPlainKeys(this.store, cipher);
    if (algorithm.startsWith('HS')) {
      const jwk: KeyJwk = { kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid: 'hs-' + hash('sha256', secret, 'hex').slice(0, 16), alg: algorithm };
      this.own = { signing: jwk, verify: [jwk] };
    } else {
      const usable = async () => (await this.store.listSigningKeys()).filter((r) => r.status !== 'retired' && r.alg === algorithm);
      let rows = await usable();
      if (!rows.some((r) => r.status === 'active')) {
        await this.store.insertSigningKey(generate(algorithm, cipher));
        rows = await usable();
      }
      const verify = rows.map((r) => JSON.parse(cipher.open(r.kid, r.jwk)) as KeyJwk);
      this.own = { signing: verify.findLast((_, i) => rows[i]!.status === 'active')!, verify };
    }
    this.changed();
  }

  /** The external identity provider's keys (auth/oidc.ts), or null. */
  setExternal(external: KeyMaterial['external']): void {
    this.external = external;
    this.changed();
  }

  material(): KeyMaterial {
    if (this.own === undefined) throw new GatewayError('FG_ERR_INTERNAL', 'keys not loaded');
    return { version: this.version, own: { issuer: this.options.issuer, ...this.own }, external: this.external, clockTolerance: this.options.clockTolerance };
  }

  /** GET /keys/.well-known/jwks.json: public keys that verify fleetgate's tokens (none for HS*). */
  jwks(): { keys: KeyJwk[] } {
    return { keys: (this.own?.verify ?? []).filter((k) => k.kty !== 'oct').map((k) => ({ ...publicPart(k), use: 'sig' })) };
  }

  onChange(listener: (material: KeyMaterial) => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    this.version++;
    const material = this.material();
    for (const l of this.listeners) l(material);
  }
}

function generate(alg: JwtAlgorithm, cipher: KeyCipher) {
  const { privateKey } = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk: JsonWebKey = privateKey.export({ format: 'jwk' });
  const kid = randomUUID();
  return { kid, alg, jwk: cipher.seal(kid, JSON.stringify({ ...jwk, kid, alg })), status: 'active' as const, createdAt: new Date().toISOString() };
}

/** Seals each key an older version stored in plain text. */
async function sealPlainKeys(store: Store, cipher: KeyCipher): Promise<void> {
  for (const row of await store.listSigningKeys()) if (!isSealed(row.jwk)) await store.replaceSigningKeyJwk(row.kid, cipher.seal(row.kid, row.jwk));
}

/** `fleetgate keys rotate`: a new active key; the previous active one keeps verifying until retired. */
export async function rotateKeys(store: Store, algorithm: SigningAlgorithm, cipher: KeyCipher): Promise<string> {
  if (algorithm.startsWith('HS')) throw new GatewayError('FG_ERR_REQUEST_INVALID', 'HS* keys come from FLEETGATE_JWT_SECRET: change the secret to rotate');
  const rows = await store.listSigningKeys();
  // A wrong key-encryption key would seal the new key so that no gateway could open it: try it on the keys in use first.
  for (const row of rows) if (row.status !== 'retired') cipher.open(row.kid, row.jwk);
  for (const row of rows) if (row.status === 'active') await store.setSigningKeyStatus(row.kid, 'retiring');
  const row = generate(algorithm, cipher);
  await store.insertSigningKey(row);
  return row.kid;
}

/** `fleetgate keys retire --kid`: tokens signed with it stop verifying, everywhere, at once. */
export async function retireKey(store: Store, kid: string): Promise<void> {
  const row = (await store.listSigningKeys()).find((r) => r.kid === kid);
  if (row === undefined) throw new GatewayError('FG_ERR_NOT_FOUND', `key "${kid}" not found`);
  if (row.status === 'active') throw new GatewayError('FG_ERR_REQUEST_INVALID', 'rotate before retiring the active key');
  await store.setSigningKeyStatus(kid, 'retired');
}
