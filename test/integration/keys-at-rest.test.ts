import { createDecipheriv, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importSigningKey, signJwt, type KeyJwk } from '../../src/auth/jwt.ts';
import { openSqliteStore } from '../../src/registry/sqlite-store.ts';
import type { SigningKeyRow } from '../../src/registry/types.ts';
import { http, run } from '../helpers/clients.ts';
import { startGateway } from '../helpers/gateway.ts';

/** Signing keys at rest and the store's file permissions (issue 13 item 2), on real files and a real gateway. */
const kMain = join(import.meta.dirname, '../../dist/main.js');
/** The built CLI; `timeout` ends a `serve` that started when it should not have (exit 124), leaving no process behind. */
const cli = (args: string[], env: NodeJS.ProcessEnv) => run('timeout', ['15', process.execPath, kMain, ...args], { env });
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-keys-at-rest-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const modeOf = (path: string) => statSync(path).mode & 0o777;
const rowsOf = async (db: string): Promise<SigningKeyRow[]> => {
  const store = openSqliteStore(`sqlite:${db}`);
  try {
    return await store.listSigningKeys();
  } finally {
    await store.close();
  }
};
/** Everything SQLite has on disk for a database, as text. */
const bytesOf = (db: string) => [db, `${db}-wal`].filter(existsSync).map((f) => readFileSync(f, 'latin1')).join('');
const profile = (base: string, token: string) => http('GET', `${base}/users/profile`, { headers: { authorization: `Bearer ${token}` } });

/** Opens a sealed row as documented (docs/SECURITY.md), independently of the gateway's code. */
function openSealed(kek: Buffer, row: SigningKeyRow): KeyJwk {
  const [iv, sealed, tag] = row.jwk.slice('aes256gcm:'.length).split('.').map((p) => Buffer.from(p, 'base64url'));
  const decipher = createDecipheriv('aes-256-gcm', kek, iv!).setAAD(Buffer.from(row.kid)).setAuthTag(tag!);
  return JSON.parse(Buffer.concat([decipher.update(sealed!), decipher.final()]).toString()) as KeyJwk;
}

describe('signing keys at rest', () => {
  it('a new store: data directory 0700, database files 0600, a 0600 key-encryption key beside it, keys sealed under it', async () => {
    const data = join(dir, 'fresh', 'data');
    const db = join(data, 'fleetgate.db');
    const gw = await startGateway({ store: `sqlite:${db}` });
    try {
      const user = { email: 'at-rest@example.com', password: 'at-rest password' };
      await gw.gateway.users.register(user);
      const token = (await gw.gateway.users.issue(user)).access_token;
      expect((await profile(gw.http, token)).status).toBe(200);
      expect(modeOf(data)).toBe(0o700);
      for (const file of [db, `${db}-wal`, `${db}-shm`, join(data, 'fleetgate.kek')]) expect(modeOf(file), file).toBe(0o600);

      const [row, ...others] = await rowsOf(db);
      expect(others).toHaveLength(0);
      expect(row!.jwk).toMatch(/^aes256gcm:/);
      // The database alone: no private key in it, in any row or page.
      expect(bytesOf(db)).not.toContain('"d":');
      // With the key-encryption key: the very key the gateway publishes and signs with.
      const jwk = openSealed(Buffer.from(readFileSync(join(data, 'fleetgate.kek'), 'utf8').trim(), 'base64'), row!);
      expect(jwk).toMatchObject({ kid: row!.kid, kty: 'OKP', crv: 'Ed25519', d: expect.any(String) });
      const published = JSON.parse((await http('GET', `${gw.http}/keys/.well-known/jwks.json`)).text).keys;
      expect(published).toEqual([expect.objectContaining({ kid: row!.kid, x: jwk.x })]);
    } finally {
      await gw.close();
    }
  });

  describe('a store written by an older version (a plain-text key, a 0644 file)', () => {
    const db = () => join(dir, 'legacy', 'fleetgate.db');
    let token: string;

    beforeAll(async () => {
      // As the old version left it: the key as plain JSON in its row, a user with a session, a token it signed.
      const store = openSqliteStore(`sqlite:${db()}`);
      const jwk = { ...generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' }), kid: 'legacy-key', alg: 'EdDSA' } as KeyJwk;
      const now = Math.floor(Date.now() / 1000);
      await store.insertSigningKey({ kid: 'legacy-key', alg: 'EdDSA', jwk: JSON.stringify(jwk), status: 'active', createdAt: new Date().toISOString() });
      await store.insertUser({ id: 'u-legacy', email: 'legacy@example.com', username: null, name: null, passwordHash: '', role: 'user', status: 'enabled', createdAt: new Date().toISOString(), picture: null, locale: null });
      await store.insertSession({ id: 's-legacy', userId: 'u-legacy', refreshJti: randomUUID(), createdAt: new Date().toISOString(), expiresAt: now + 3600, revokedAt: null });
      await store.close();
      chmodSync(db(), 0o644);
      token = signJwt({ iss: 'fleetgate.auth', sub: 'u-legacy', type: 0, sid: 's-legacy', jti: randomUUID(), iat: now, exp: now + 600 }, importSigningKey(jwk));
      expect(bytesOf(db())).toContain('"d":');
    });

    it('seals the key on first start, narrows the file to 0600, and tokens signed before still verify', async () => {
      const gw = await startGateway({ store: `sqlite:${db()}` });
      try {
        expect((await profile(gw.http, token)).json).toMatchObject({ id: 'u-legacy' });
        expect((await rowsOf(db())).map((r) => r.jwk)).toEqual([expect.stringMatching(/^aes256gcm:/)]);
        expect(modeOf(db())).toBe(0o600);
      } finally {
        await gw.close();
      }
      // Once SQLite has checkpointed, not even a freed page holds the old plain text.
      expect(bytesOf(db())).not.toMatch(/"d":"[A-Za-z0-9_-]{43}"/);
    });

    it('a wrong key-encryption key stops `serve` and `keys rotate` with one line naming the setting (exit 2), and changes nothing', async () => {
      const env = { ...process.env, FLEETGATE_STORE: `sqlite:${db()}`, FLEETGATE_HTTP_PORT: '0', FLEETGATE_MQTT_PORT: '0', FLEETGATE_HOST: '127.0.0.1', FLEETGATE_LOG_LEVEL: 'silent' };
      const wrong = randomBytes(32);
      const message = 'does not open signing key "legacy-key" in the store: wrong key-encryption key';
      for (const args of [['serve'], ['keys', 'rotate']]) {
        const byValue = await cli(args, { ...env, FLEETGATE_KEY_ENCRYPTION_KEY: wrong.toString('hex') });
        expect(byValue, args.join(' ')).toMatchObject({ code: 2, stderr: `fleetgate: FG_ERR_CONFIG_INVALID: FLEETGATE_KEY_ENCRYPTION_KEY ${message}\n` });
      }
      const file = join(dir, 'wrong.kek');
      writeFileSync(file, wrong.toString('base64'));
      const byFile = await cli(['serve'], { ...env, FLEETGATE_KEY_ENCRYPTION_KEY_FILE: file });
      expect(byFile).toMatchObject({ code: 2, stderr: `fleetgate: FG_ERR_CONFIG_INVALID: FLEETGATE_KEY_ENCRYPTION_KEY_FILE (${file}) ${message}\n` });
      expect((await rowsOf(db())).map((r) => r.kid)).toEqual(['legacy-key']);
      // The right one (the generated file beside the store) rotates.
      const rotated = await cli(['keys', 'rotate'], env);
      expect(rotated.code, rotated.stderr).toBe(0);
      expect((await rowsOf(db())).map((r) => r.jwk)).toEqual([expect.stringMatching(/^aes256gcm:/), expect.stringMatching(/^aes256gcm:/)]);
    });
  });

  it('FLEETGATE_KEY_ENCRYPTION_KEY (hex) and _FILE (base64) name the same key; neither writes a key file', async () => {
    const kek = randomBytes(32);
    const db = join(dir, 'given', 'fleetgate.db');
    const first = await startGateway({ store: `sqlite:${db}`, keyEncryptionKey: kek.toString('hex') });
    await first.close();
    const file = join(dir, 'given.kek');
    writeFileSync(file, kek.toString('base64') + '\n', { mode: 0o600 });
    const second = await startGateway({ store: `sqlite:${db}`, keyEncryptionKeyFile: file });
    await second.close();
    expect(existsSync(join(dir, 'given', 'fleetgate.kek'))).toBe(false);
    expect(openSealed(kek, (await rowsOf(db))[0]!)).toMatchObject({ d: expect.any(String) });
  });
});
