import { describe, expect, it } from 'vitest';
import { basicUserPassword, credentialFromAuthorization } from '../../../src/auth/credentials.ts';
import { digestSecret } from '../../../src/auth/secret.ts';

const secret = 'f8b2a5e0-5d0f-4a7e-9a51-2d4f0d5b9c11';
const digest = digestSecret(secret);
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('auth/credentials', () => {
  it.each([
    [`Client ${secret}`, { kind: 'secret', digest }],
    [`client   ${secret}`, { kind: 'secret', digest }],
    [`Thing ${secret}`, { kind: 'secret', digest }],
    [secret, { kind: 'secret', digest }],
    [`Basic ${b64('client-1:' + secret)}`, { kind: 'basic', clientId: 'client-1', digest }],
    ['Basic ' + b64('no-colon'), { kind: 'malformed' }],
    ['Basic ' + b64('id:'), { kind: 'malformed' }],
    ['Client ', { kind: 'secret', digest: digestSecret('Client') }],
  ])('%j', (header, credential) => {
    expect(credentialFromAuthorization(header)).toEqual(credential);
  });

  it('gives undefined when there is no credential', () => {
    expect(credentialFromAuthorization('')).toBeUndefined();
    expect(credentialFromAuthorization('  ')).toBeUndefined();
  });

  it('never keeps the secret itself', () => {
    expect(JSON.stringify(credentialFromAuthorization(`Client ${secret}`))).not.toContain(secret);
  });

  it('splits admin Basic credentials, the password may hold colons', () => {
    expect(basicUserPassword(`Basic ${b64('admin@example.com:pa:ss')}`)).toEqual({ user: 'admin@example.com', password: 'pa:ss' });
    expect(basicUserPassword('Bearer x')).toBeUndefined();
  });
});
