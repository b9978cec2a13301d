import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupPki, kCertsDir, makePki, run, runMake, runOk, type TestPki } from '../helpers/certs.ts';

const openssl = (...args: string[]) => runOk('openssl', args);

/** `openssl verify` as one string (its verdicts go to stdout, its errors to stderr) and whether it passed. */
function verify(...args: string[]): { ok: boolean; output: string } {
  const result = run('openssl', ['verify', ...args]);
  return { ok: result.status === 0, output: result.stdout + result.stderr };
}

function make(dir: string, ...args: string[]): string {
  const result = runMake(dir, ...args);
  if (result.status !== 0) throw new Error(`make ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

/** notAfter - notBefore, in days. */
function validityDays(cert: string): number {
  const dates = openssl('x509', '-in', cert, '-noout', '-startdate', '-enddate', '-dateopt', 'iso_8601');
  const date = (name: string) => Date.parse(dates.match(new RegExp(`${name}=(.+)`))![1]!);
  return (date('notAfter') - date('notBefore')) / (24 * 60 * 60 * 1000);
}

/** The subject CN, unescaped: one RDN a line, as UTF-8. */
function subjectCn(cert: string): string | undefined {
  const subject = openssl('x509', '-in', cert, '-noout', '-subject', '-nameopt', 'sep_multiline,lname,utf8');
  return subject.match(/commonName=(.*)/)?.[1];
}

/** fn with a temp CRT_LOCATION of its own, removed afterwards. */
function inTempDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-certs-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('certs/Makefile', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleetgate-certs-'));
    make(dir, 'ca');
    make(dir, 'server_cert');
    make(dir, 'client_cert', 'CLIENT_SECRET=s3cret-value', 'CRT_FILE_NAME=dev1');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes the CA, server and client files, keys readable by their owner only, and no CSR left behind', () => {
    for (const name of ['ca', 'fleetgate-server', 'dev1']) {
      expect(existsSync(file(`${name}.crt`))).toBe(true);
      expect(statSync(file(`${name}.key`)).mode & 0o777).toBe(0o600);
    }
    expect(readdirSync(dir).filter((name) => name.endsWith('.csr'))).toEqual([]);
  });

  it('signs the server and client certificates with the CA', () => {
    const result = verify('-CAfile', file('ca.crt'), file('fleetgate-server.crt'), file('dev1.crt'));
    expect(result.output).toContain('fleetgate-server.crt: OK');
    expect(result.output).toContain('dev1.crt: OK');
    expect(result.ok).toBe(true);
  });

  it('makes a CA that may sign certificates and CRLs', () => {
    const text = openssl('x509', '-in', file('ca.crt'), '-noout', '-ext', 'basicConstraints,keyUsage');
    expect(text).toContain('CA:TRUE');
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
  });

  it('names the client by its secret, for client authentication only', () => {
    expect(subjectCn(file('dev1.crt'))).toBe('s3cret-value');
    const text = openssl('x509', '-in', file('dev1.crt'), '-noout', '-ext', 'extendedKeyUsage,basicConstraints');
    expect(text).toContain('TLS Web Client Authentication');
    expect(text).not.toContain('Server Authentication');
    expect(text).toContain('CA:FALSE');
  });

  it('makes a server certificate for localhost and 127.0.0.1', () => {
    expect(subjectCn(file('fleetgate-server.crt'))).toBe('localhost');
    const server = file('fleetgate-server.crt');
    const text = openssl('x509', '-in', server, '-noout', '-ext', 'subjectAltName,extendedKeyUsage');
    expect(text).toContain('DNS:localhost');
    expect(text).toContain('IP Address:127.0.0.1');
    expect(text).toContain('TLS Web Server Authentication');
  });

  it('gives the CA 1095 days, the server 1000 and a client 730', () => {
    expect(Math.abs(validityDays(file('ca.crt')) - 1095)).toBeLessThanOrEqual(1);
    expect(Math.abs(validityDays(file('fleetgate-server.crt')) - 1000)).toBeLessThanOrEqual(1);
    expect(Math.abs(validityDays(file('dev1.crt')) - 730)).toBeLessThanOrEqual(1);
  });

  it('gives every certificate its own serial', () => {
    const serial = (name: string) => openssl('x509', '-in', file(`${name}.crt`), '-noout', '-serial');
    const serials = ['ca', 'fleetgate-server', 'dev1'].map(serial);
    expect(new Set(serials).size).toBe(3);
  });

  it('adds another server CN as a DNS name', () => inTempDir((own) => {
    make(own, 'ca', 'server_cert', 'CN=gw.fleet.example');
    const text = openssl('x509', '-in', join(own, 'fleetgate-server.crt'), '-noout', '-ext', 'subjectAltName');
    expect(text).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1, DNS:gw\.fleet\.example/);
  }));

  it('takes thing_cert THING_SECRET=... as the Mainflux name of client_cert', () => {
    make(dir, 'thing_cert', 'THING_SECRET=x', 'CRT_FILE_NAME=t');
    expect(subjectCn(file('t.crt'))).toBe('x');
    expect(verify('-CAfile', file('ca.crt'), file('t.crt')).ok).toBe(true);
  });

  it('takes thing_cert KEY=... as Mainflux\'s guides write it', () => {
    make(dir, 'thing_cert', 'KEY=mainflux-key-1', 'CRT_FILE_NAME=k');
    expect(subjectCn(file('k.crt'))).toBe('mainflux-key-1');
    expect(verify('-CAfile', file('ca.crt'), file('k.crt')).ok).toBe(true);
  });

  it('honours Magistrala\'s make ca CN=... O=... OU=... emailAddress=... in the CA subject', () => inTempDir((own) => {
    make(own, 'ca', 'CN=Acme_Root_CA', 'O=Acme', 'OU=iot', 'emailAddress=pki@acme.example');
    expect(new X509Certificate(readFileSync(join(own, 'ca.crt'))).subject.split('\n')).toEqual(['CN=Acme_Root_CA', 'O=Acme', 'OU=iot', 'emailAddress=pki@acme.example']);
    // The same variables for a certificate it signs; the CA keeps its name.
    make(own, 'server_cert', 'CN=gw.acme.example', 'OU=edge', 'emailAddress=ops@acme.example');
    const server = new X509Certificate(readFileSync(join(own, 'fleetgate-server.crt')));
    expect(server.subject.split('\n')).toEqual(['CN=gw.acme.example', 'O=Fleetgate', 'OU=edge', 'emailAddress=ops@acme.example']);
    expect(server.issuer.split('\n')[0]).toBe('CN=Acme_Root_CA');
    expect(verify('-CAfile', join(own, 'ca.crt'), join(own, 'fleetgate-server.crt')).ok).toBe(true);
  }));

  it('gives CN to the server, not the CA, when both are made at once', () => inTempDir((own) => {
    make(own, 'ca', 'server_cert', 'CN=both.example', 'OU=same');
    expect(subjectCn(join(own, 'ca.crt'))).toBe('Fleetgate_Self_Signed_CA');
    expect(subjectCn(join(own, 'fleetgate-server.crt'))).toBe('both.example');
    expect(verify('-CAfile', join(own, 'ca.crt'), join(own, 'fleetgate-server.crt')).ok).toBe(true);
  }));

  it('keeps a secret with characters the shell, make or -subj would read (/ + \' " \\ $ =, spaces) as the CN', () => {
    const secret = `a/b+c=d,  e'f"g\\h$i é`;
    make(dir, 'client_cert', `CLIENT_SECRET=${secret}`, 'CRT_FILE_NAME=odd');
    expect(subjectCn(file('odd.crt'))).toBe(secret);
  });

  it('refuses client_cert without CLIENT_SECRET, saying so, and writes nothing', () => {
    const result = runMake(dir, 'client_cert', 'CRT_FILE_NAME=nosecret');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('CLIENT_SECRET is empty');
    expect(existsSync(file('nosecret.key'))).toBe(false);
    expect(runMake(dir, 'thing_cert', 'CRT_FILE_NAME=nosecret').stderr).toContain('THING_SECRET is empty');
  });

  it('refuses a secret longer than a CN can hold (64 characters), naming the way out; 64 is fine', () => {
    const result = runMake(dir, 'client_cert', `CLIENT_SECRET=${'s'.repeat(65)}`, 'CRT_FILE_NAME=long');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('CLIENT_SECRET is longer than 64 characters, the most a certificate CN holds');
    expect(existsSync(file('long.key'))).toBe(false);
    make(dir, 'client_cert', `CLIENT_SECRET=${'s'.repeat(64)}`, 'CRT_FILE_NAME=max');
    expect(subjectCn(file('max.crt'))).toBe('s'.repeat(64));
  });

  it('refuses a certificate before there is a CA', () => inTempDir((empty) => {
    const result = runMake(empty, 'client_cert', 'CLIENT_SECRET=x');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('run `make ca` first');
  }));

  it('removes what it made with clean_certs, and succeeds again with nothing left', () => inTempDir((own) => {
    make(own, 'ca');
    make(own, 'client_cert', 'CLIENT_SECRET=x');
    expect(readdirSync(own).sort()).toEqual(['ca.crt', 'ca.key', 'ca.srl', 'client.crt', 'client.key']);
    make(own, 'clean_certs');
    expect(readdirSync(own)).toEqual([]);
    make(own, 'clean_certs');
  }));

  it('prints help by default, with the variables', () => {
    const help = make(dir);
    expect(help).toContain('client_cert');
    expect(help).toContain('CRT_LOCATION=');
    expect(help).toContain('DAYS_CLIENT=730');
  });
});

describe('makePki', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki();
  });
  afterAll(() => cleanupPki(pki));

  it('issues client certificates the CA verifies, also against its (empty) CRL', () => {
    const { cert, key } = pki.client('alice', 'alice-secret');
    expect(existsSync(key)).toBe(true);
    expect(subjectCn(cert)).toBe('alice-secret');
    expect(verify('-CAfile', pki.ca, cert).ok).toBe(true);
    expect(verify('-crl_check', '-CRLfile', pki.crl, '-CAfile', pki.ca, cert).ok).toBe(true);
    expect(verify('-CAfile', pki.ca, pki.serverCert).ok).toBe(true);
  });

  it('issues a client certificate that expired yesterday', () => {
    const { cert, key } = pki.expiredClient('old', 'old-secret');
    expect(existsSync(key)).toBe(true);
    expect(subjectCn(cert)).toBe('old-secret');
    const result = verify('-CAfile', pki.ca, cert);
    expect(result.ok).toBe(false);
    expect(result.output).toContain('certificate has expired');
  });

  it('revokes one client certificate in the CRL and not another', () => {
    const revoked = pki.client('mallory', 'mallory-secret').cert;
    const kept = pki.client('bob', 'bob-secret').cert;
    expect(pki.revoke(revoked)).toBe(pki.crl);
    const check = (cert: string) => verify('-crl_check', '-CRLfile', pki.crl, '-CAfile', pki.ca, cert);
    expect(check(revoked)).toMatchObject({ ok: false, output: expect.stringContaining('certificate revoked') });
    expect(check(kept).ok).toBe(true);
  });
});

describe('certs/.gitignore', () => {
  const repo = dirname(kCertsDir);
  // --no-index: the rules themselves, whether or not the file is tracked yet.
  const ignored = (path: string) => run('git', ['-C', repo, 'check-ignore', '-q', '--no-index', path]).status === 0;

  it('ignores whatever is generated and keeps the sources', () => {
    expect(ignored('certs/ca.crt')).toBe(true);
    expect(ignored('certs/x.key')).toBe(true);
    expect(ignored('certs/ca.crl')).toBe(true);
    expect(ignored('certs/Makefile')).toBe(false);
    expect(ignored('certs/.gitignore')).toBe(false);
  });
});
