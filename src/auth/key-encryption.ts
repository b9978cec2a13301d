import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { GatewayConfig } from '../config.ts';
import { GatewayError } from '../errors.ts';

/**
 * Signing keys at rest (docs/SECURITY.md): each private JWK is sealed with AES-256-GCM under a key-encryption key (KEK)
 * that is not in the store, with the key's kid as additional data, so that the database alone reveals no key and a
 * sealed key copied into another row does not open. The KEK comes from FLEETGATE_KEY_ENCRYPTION_KEY, or the file
 * FLEETGATE_KEY_ENCRYPTION_KEY_FILE, or else `fleetgate.kek` beside the store, generated (0600) when first needed.
 */
export interface KeyCipher {
  seal(kid: string, jwk: string): string;
  /** the JWK of a stored row, sealed or (written before sealing existed) plain; FG_ERR_CONFIG_INVALID if the KEK is wrong */
  open(kid: string, stored: string): string;
}

const kSealed = 'aes256gcm:';
const kIvBytes = 12;
const kTagBytes = 16;

export const isSealed = (stored: string): boolean => stored.startsWith(kSealed);

/** 32 bytes written as hex or base64 (base64url too), or undefined. */
export function parseKek(text: string): Buffer | undefined {
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(text) ? Buffer.from(text, 'base64') : undefined;
  return key?.length === 32 ? key : undefined;
}

type KekSettings = Pick<GatewayConfig, 'keyEncryptionKey' | 'keyEncryptionKeyFile' | 'store'>;

/** The cipher of a configuration; the KEK is read (or generated) on first use, so HS* setups never create one. */
export function keyCipher(settings: KekSettings): KeyCipher {
  let loaded: { key: Buffer; source: string } | undefined;
  const kek = () => (loaded ??= loadKek(settings));
  return {
    seal(kid, jwk) {
      const iv = randomBytes(kIvBytes);
      const cipher = createCipheriv('aes-256-gcm', kek().key, iv).setAAD(Buffer.from(kid));
      const sealed = Buffer.concat([cipher.update(jwk, 'utf8'), cipher.final()]);
      return kSealed + [iv, sealed, cipher.getAuthTag()].map((b) => b.toString('base64url')).join('.');
    },
    open(kid, stored) {
      if (!isSealed(stored)) return stored;
      const { key, source } = kek();
      const [iv = '', sealed = '', tag = ''] = stored.slice(kSealed.length).split('.');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: kTagBytes })
          .setAAD(Buffer.from(kid))
          .setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(sealed, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        throw new GatewayError('FG_ERR_CONFIG_INVALID', `${source} does not open signing key "${kid}" in the store: wrong key-encryption key`);
      }
    },
  };
}

function loadKek({ keyEncryptionKey, keyEncryptionKeyFile, store }: KekSettings): { key: Buffer; source: string } {
  // loadConfig() checked its form.
  if (keyEncryptionKey !== '') return { key: parseKek(keyEncryptionKey)!, source: 'FLEETGATE_KEY_ENCRYPTION_KEY' };
  if (keyEncryptionKeyFile !== '') return { key: readKek(keyEncryptionKeyFile, `FLEETGATE_KEY_ENCRYPTION_KEY_FILE (${keyEncryptionKeyFile})`), source: `FLEETGATE_KEY_ENCRYPTION_KEY_FILE (${keyEncryptionKeyFile})` };
  // A shared store (PostgreSQL) has no place beside it, and every instance must hold the same key.
  if (!store.startsWith('sqlite:')) {
    throw new GatewayError('FG_ERR_CONFIG_INVALID', 'FLEETGATE_KEY_ENCRYPTION_KEY or FLEETGATE_KEY_ENCRYPTION_KEY_FILE is required with a shared store: every instance needs the same key-encryption key (openssl rand -base64 32)');
  }
  const path = store.slice('sqlite:'.length);
  // A store in memory dies with the process: so may its KEK.
  if (path === ':memory:') return { key: randomBytes(32), source: 'the in-memory key-encryption key' };
  const file = join(dirname(path), 'fleetgate.kek');
  const source = `the key-encryption key file ${file} (FLEETGATE_KEY_ENCRYPTION_KEY_FILE)`;
  createOnce(file, randomBytes(32).toString('base64') + '\n');
  return { key: readKek(file, source), source };
}

function readKek(file: string, source: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `${source}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
  const key = parseKek(text);
  if (key === undefined) throw new GatewayError('FG_ERR_CONFIG_INVALID', `${source}: must hold 32 bytes as base64 or hex`);
  return key;
}

/**
 * Writes `content` to `file` (0600) unless it exists: written whole to a temporary name first and then linked, so
 * that a gateway and a CLI starting together never read a half-written key, and the first one's key wins.
 */
function createOnce(file: string, content: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(temporary, content, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(temporary, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(temporary, { force: true });
  }
}
