import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CompactSign, SignJWT, exportJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { importVerifyKey, verifyJwt, type KeyJwk, type VerifyKey } from '../../../src/auth/jwt.ts';

// Tokens are made with jose, an independent implementation of the same RFCs.
const ed = generateKeyPairSync('ed25519');
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const attacker = generateKeyPairSync('ed25519');
const hsSecret = Buffer.from('a-32-byte-long-secret-for-hs256!!');

async function jwk(key: KeyObject, kid: string, alg: KeyJwk['alg']): Promise<VerifyKey> {
  return importVerifyKey({ ...(await exportJWK(key)), kid, alg } as KeyJwk);
}
const keys = new Map<string | undefined, VerifyKey>([
  ['ed', await jwk(ed.publicKey, 'ed', 'EdDSA')],
  ['rs', await jwk(rsa.publicKey, 'rs', 'RS256')],
  ['es', await jwk(ec.publicKey, 'es', 'ES256')],
  ['hs', importVerifyKey({ kty: 'oct', k: hsSecret.toString('base64url'), kid: 'hs', alg: 'HS256' })],
]);
const lookup = (kid: string | undefined) => keys.get(kid);
const now = Math.floor(Date.now() / 1000);
const rules = { issuer: 'fleetgate.auth', audience: undefined, now, clockTolerance: 5 };
const claims = { iss: 'fleetgate.auth', sub: 'user-1', type: 0, exp: now + 60 };

const sign = (payload: object, header: Record<string, unknown>, key: KeyObject | Uint8Array) =>
  new SignJWT(payload as never).setProtectedHeader(header as never).sign(key);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('auth/jwt verifyJwt', () => {
  it.each([
    ['EdDSA', () => sign(claims, { alg: 'EdDSA', kid: 'ed' }, ed.privateKey)],
    ['RS256', () => sign(claims, { alg: 'RS256', kid: 'rs' }, rsa.privateKey)],
    ['ES256', () => sign(claims, { alg: 'ES256', kid: 'es' }, ec.privateKey)],
    ['HS256', () => sign(claims, { alg: 'HS256', kid: 'hs' }, hsSecret)],
  ])('accepts a good %s token', async (_alg, make) => {
    expect(verifyJwt(await make(), lookup, rules)).toMatchObject({ ok: true, claims: { sub: 'user-1' } });
  });

  it('refuses alg "none", with or without a kid', () => {
    for (const header of [{ alg: 'none', kid: 'ed' }, { alg: 'none' }]) {
      expect(verifyJwt(`${b64(header)}.${b64(claims)}.`, lookup, rules).ok).toBe(false);
      expect(verifyJwt(`${b64(header)}.${b64(claims)}.AAAA`, lookup, rules)).toMatchObject({ ok: false });
    }
  });

  it('refuses HS256 signed with the RSA public key (key confusion): the key pins RS256', () => {
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    const input = `${b64({ alg: 'HS256', kid: 'rs' })}.${b64(claims)}`;
    const forged = `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
    expect(verifyJwt(forged, lookup, rules)).toMatchObject({ ok: false, reason: 'algorithm' });
  });

  it('refuses an unknown kid, and never takes a key from jku, x5u or jwk headers', async () => {
    const attackerJwk = await exportJWK(attacker.publicKey);
    const injected = await new CompactSign(Buffer.from(JSON.stringify(claims)))
      .setProtectedHeader({ alg: 'EdDSA', kid: 'attacker', jwk: attackerJwk, jku: 'http://127.0.0.1:1/jwks', x5u: 'http://127.0.0.1:1/x5' } as never)
      .sign(attacker.privateKey);
    expect(verifyJwt(injected, lookup, rules)).toMatchObject({ ok: false, reason: 'unknown-kid' });
    const borrowedKid = await sign(claims, { alg: 'EdDSA', kid: 'ed', jwk: attackerJwk }, attacker.privateKey);
    expect(verifyJwt(borrowedKid, lookup, rules)).toMatchObject({ ok: false, reason: 'signature' });
  });

  it.each([
    ['expired', { ...claims, exp: now - 10 }, 'expired'],
    ['expired within the clock tolerance is still good', { ...claims, exp: now - 2 }, null],
    ['not yet valid', { ...claims, nbf: now + 60 }, 'not-yet-valid'],
    ['from another issuer', { ...claims, iss: 'evil' }, 'issuer'],
    ['without exp', { iss: 'fleetgate.auth', sub: 'x' }, 'malformed'],
  ])('%s', async (_name, payload, reason) => {
    const result = verifyJwt(await sign(payload, { alg: 'EdDSA', kid: 'ed' }, ed.privateKey), lookup, rules);
    expect(result).toMatchObject(reason === null ? { ok: true } : { ok: false, reason });
  });

  it('checks the audience when one is configured', async () => {
    const token = await sign({ ...claims, aud: ['a', 'fleetgate'] }, { alg: 'EdDSA', kid: 'ed' }, ed.privateKey);
    expect(verifyJwt(token, lookup, { ...rules, audience: 'fleetgate' }).ok).toBe(true);
    expect(verifyJwt(token, lookup, { ...rules, audience: 'other' })).toMatchObject({ ok: false, reason: 'audience' });
  });

  it('refuses a tampered payload', async () => {
    const [h, , s] = (await sign(claims, { alg: 'EdDSA', kid: 'ed' }, ed.privateKey)).split('.');
    expect(verifyJwt(`${h}.${b64({ ...claims, sub: 'admin' })}.${s}`, lookup, rules)).toMatchObject({ ok: false, reason: 'signature' });
  });

  it('refuses an oversize token before any crypto, and a critical header it does not know', async () => {
    expect(verifyJwt('eyJ' + 'a'.repeat(9000) + '.b.c', lookup, rules)).toMatchObject({ ok: false, reason: 'too-large' });
    const crit = await sign(claims, { alg: 'EdDSA', kid: 'ed', crit: ['exp'] }, ed.privateKey).catch(() => `${b64({ alg: 'EdDSA', kid: 'ed', crit: ['x'], x: 1 })}.${b64(claims)}.AAAA`);
    expect(verifyJwt(crit, lookup, rules)).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it.each(['', 'a.b', 'a.b.c.d', '!!!.b.c', `${b64([1])}.${b64(claims)}.AAAA`])('refuses malformed %j', (token) => {
    expect(verifyJwt(token, lookup, rules).ok).toBe(false);
  });
});
