import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyCipher, parseKek } from '../../../src/auth/key-encryption.ts';
import { loadConfig } from '../../../src/config.ts';
import { GatewayError } from '../../../src/errors.ts';

const kek = randomBytes(32);
const cipher = (key: Buffer) => keyCipher({ keyEncryptionKey: key.toString('hex'), keyEncryptionKeyFile: '', store: 'sqlite::memory:' });
const refusal = (fn: () => unknown): GatewayError => {
  try {
    fn();
  } catch (err) {
    return err as GatewayError;
  }
  throw new Error('not refused');
};

describe('key-encryption key and sealing', () => {
  it('reads 32 bytes as hex, base64 or base64url, and nothing else', () => {
    for (const text of [kek.toString('hex'), kek.toString('base64'), kek.toString('base64url')]) expect(parseKek(text)).toEqual(kek);
    for (const text of ['', kek.toString('hex').slice(2), randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), 'not a key']) expect(parseKek(text), text).toBeUndefined();
  });

  it('seals with AES-256-GCM bound to the kid: another kid or another key does not open it', () => {
    const sealed = cipher(kek).seal('kid-1', '{"d":"secret"}');
    expect(sealed).toMatch(/^aes256gcm:[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(sealed).not.toContain('secret');
    expect(cipher(kek).open('kid-1', sealed)).toBe('{"d":"secret"}');
    // A row written before sealing existed is read as it is (and sealed by the key ring on load).
    expect(cipher(kek).open('kid-1', '{"d":"plain"}')).toBe('{"d":"plain"}');
    for (const [kid, key] of [['kid-2', kek], ['kid-1', randomBytes(32)]] as const) {
      expect(refusal(() => cipher(key).open(kid, sealed))).toMatchObject({ code: 'FG_ERR_CONFIG_INVALID', message: `FLEETGATE_KEY_ENCRYPTION_KEY does not open signing key "${kid}" in the store: wrong key-encryption key` });
    }
  });

  it('refuses a malformed key, or both settings at once, naming them', () => {
    expect(refusal(() => loadConfig({}, { FLEETGATE_KEY_ENCRYPTION_KEY: 'short' })).message).toContain('FLEETGATE_KEY_ENCRYPTION_KEY (--key-encryption-key): must be 32 bytes as base64 or hex');
    expect(refusal(() => loadConfig({}, { FLEETGATE_KEY_ENCRYPTION_KEY: kek.toString('hex'), FLEETGATE_KEY_ENCRYPTION_KEY_FILE: '/k' })).message)
      .toContain('FLEETGATE_KEY_ENCRYPTION_KEY and FLEETGATE_KEY_ENCRYPTION_KEY_FILE: set one, not both');
    const missing = keyCipher({ keyEncryptionKey: '', keyEncryptionKeyFile: '/nonexistent/fleetgate.kek', store: 'sqlite::memory:' });
    expect(refusal(() => missing.seal('k', '{}'))).toMatchObject({ code: 'FG_ERR_CONFIG_INVALID', message: 'FLEETGATE_KEY_ENCRYPTION_KEY_FILE (/nonexistent/fleetgate.kek): cannot read it (ENOENT)' });
  });
});
