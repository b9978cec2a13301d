import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project's certs/ directory, whose Makefile the tests use as an operator would. */
export const kCertsDir = fileURLToPath(new URL('../../certs', import.meta.url));

// Nothing from the caller's shell may change what make does: a secret ?= would take, or flags of an enclosing make.
const kUninherited = new Set(['CLIENT_SECRET', 'THING_SECRET', 'MAKEFLAGS', 'MFLAGS', 'MAKELEVEL']);
const kEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !kUninherited.has(name)));

/** A command's result as is (status, stdout, stderr): for tests of failures. */
export function run(file: string, args: readonly string[]): SpawnSyncReturns<string> {
  const result = spawnSync(file, args, { encoding: 'utf8', env: kEnv });
  if (result.error) throw result.error;
  return result;
}

/** A command's stdout; throws with its stderr when it fails. */
export function runOk(file: string, args: readonly string[]): string {
  const result = run(file, args);
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.status}):\n${result.stderr}`);
  return result.stdout;
}

/** `make -C certs <args> CRT_LOCATION=<dir>`, as is. */
export function runMake(dir: string, ...args: string[]): SpawnSyncReturns<string> {
  return run('make', ['-s', '-C', kCertsDir, ...args, `CRT_LOCATION=${dir}`]);
}

export interface TestPki {
  readonly dir: string;
  /** path of ca.crt */
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** issue a client cert signed by this CA with CN = cn; returns paths */
  client(name: string, cn: string): { cert: string; key: string };
  /** a client cert that expired yesterday (signed by this CA) */
  expiredClient(name: string, cn: string): { cert: string; key: string };
  /** a client cert issued by an intermediate CA under this CA; its file holds the intermediate too, as a chain */
  intermediateClient(name: string, cn: string): { cert: string; key: string };
  /** revoke a cert issued by client(), and (re)write this CA's CRL file; returns the CRL path */
  revoke(cert: string): string;
  /** the CRL path (an empty CRL exists from the start) */
  readonly crl: string;
}

/**
 * A CA, server certificate and empty CRL in a fresh temp dir, made by certs/Makefile itself. What the Makefile does
 * not offer (backdated certificates, revocation, CRLs) is `openssl ca` over the same ca.crt/ca.key, with a minimal
 * config and database under db/. EC keys: a PKI and a few clients take tens of milliseconds.
 */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-certs-'));
  const make = (...args: string[]) => {
    const result = runMake(dir, ...args);
    if (result.status !== 0) throw new Error(`make ${args.join(' ')} failed (${result.status}):\n${result.stderr}`);
  };
  make('ca', 'server_cert');

  const db = join(dir, 'db');
  mkdirSync(db);
  writeFileSync(join(db, 'index.txt'), '');
  // A random first serial, positive (top bit clear), so `openssl ca`'s serials never meet the Makefile's (ca.srl).
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  writeFileSync(join(db, 'serial'), `${serial.toString('hex')}\n`);
  writeFileSync(join(db, 'crlnumber'), '01\n');
  const config = join(db, 'openssl.cnf');
  writeFileSync(config, [
    '[ca]', 'default_ca = test_ca',
    '[test_ca]',
    `database = ${join(db, 'index.txt')}`, `serial = ${join(db, 'serial')}`, `crlnumber = ${join(db, 'crlnumber')}`,
    `new_certs_dir = ${db}`, `certificate = ${join(dir, 'ca.crt')}`, `private_key = ${join(dir, 'ca.key')}`,
    'default_md = sha256', 'default_days = 1', 'default_crl_days = 30', 'unique_subject = no',
    'policy = policy_cn', 'x509_extensions = client_ext', 'crl_extensions = crl_ext',
    '[policy_cn]', 'commonName = supplied',
    // As the Makefile's client_cert, so an expired certificate differs from a good one only in its dates.
    '[client_ext]', 'basicConstraints = critical,CA:FALSE', 'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid,issuer', 'extendedKeyUsage = clientAuth',
    '[crl_ext]', 'authorityKeyIdentifier = keyid:always',
    '',
  ].join('\n'));
  const ca = (...args: string[]) => runOk('openssl', ['ca', '-config', config, '-batch', ...args]);

  const crl = join(dir, 'ca.crl');
  const writeCrl = () => {
    ca('-gencrl', '-out', crl);
    return crl;
  };
  writeCrl();

  const paths = (name: string) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) });
  return {
    dir, crl,
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'fleetgate-server.crt'),
    serverKey: join(dir, 'fleetgate-server.key'),
    client(name, cn) {
      make('client_cert', `CLIENT_SECRET=${cn}`, `CRT_FILE_NAME=${name}`);
      return paths(name);
    },
    expiredClient(name, cn) {
      const { cert, key } = paths(name);
      const csr = join(dir, `${name}.csr`);
      runOk('openssl', [
        'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-utf8',
        '-subj', `/CN=${dnEscape(cn)}`, '-keyout', key, '-out', csr,
      ]);
      // `openssl x509 -req` (3.0) cannot backdate (no -not_before); `openssl ca` can.
      const day = 24 * 60 * 60 * 1000;
      const [start, end] = [asn1Time(Date.now() - 2 * day), asn1Time(Date.now() - day)];
      ca('-notext', '-in', csr, '-out', cert, '-startdate', start, '-enddate', end);
      rmSync(csr);
      return { cert, key };
    },
    intermediateClient(name, cn) {
      const { cert, key } = paths(name);
      const [ica, icaKey, ext] = [join(dir, `${name}-ica.crt`), join(dir, `${name}-ica.key`), join(dir, `${name}-ica.ext`)];
      writeFileSync(ext, [
        '[ica]', 'basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid,issuer',
        '[leaf]', 'basicConstraints = critical,CA:FALSE', 'extendedKeyUsage = clientAuth', 'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid,issuer', '',
      ].join('\n'));
      const issue = (subject: string, outKey: string, outCert: string, issuer: string, issuerKey: string, section: string) => {
        const csr = `${outCert}.csr`;
        runOk('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-utf8', '-subj', subject, '-keyout', outKey, '-out', csr]);
        runOk('openssl', ['x509', '-req', '-in', csr, '-CA', issuer, '-CAkey', issuerKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-extensions', section, '-out', outCert]);
        rmSync(csr);
      };
      issue(`/CN=${name} intermediate CA`, icaKey, ica, join(dir, 'ca.crt'), join(dir, 'ca.key'), 'ica');
      issue(`/CN=${dnEscape(cn)}`, key, cert, ica, icaKey, 'leaf');
      writeFileSync(cert, readFileSync(cert, 'utf8') + readFileSync(ica, 'utf8'));
      return { cert, key };
    },
    revoke(cert) {
      // `-revoke` takes a certificate the database has never seen (as all of the Makefile's) and records it.
      ca('-revoke', cert);
      return writeCrl();
    },
  };
}

export function cleanupPki(pki: TestPki): void {
  rmSync(pki.dir, { recursive: true, force: true });
}

/** A value made safe inside -subj, where \ / + have meaning. */
function dnEscape(value: string): string {
  return value.replace(/[\\/+]/g, '\\$&');
}

/** YYYYMMDDHHMMSSZ, as `openssl ca -startdate/-enddate` take it. */
function asn1Time(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}
