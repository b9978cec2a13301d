import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const kMakefile = join(import.meta.dirname, '../../certs/Makefile');

export interface ClientCertificate {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface Pki {
  readonly dir: string;
  /** the CA's certificate: the client CA of the mutual-TLS gateway, and what clients trust */
  readonly caFile: string;
  readonly ca: Buffer;
  /** env for startFleetgate: server certificate (CN localhost, SAN 127.0.0.1); `mutual`: with the client CA */
  env(mutual: boolean): NodeJS.ProcessEnv;
  /** a client certificate with CN = `secret`, signed by the CA: the certificate is the credential */
  clientCert(secret: string, name: string): ClientCertificate;
  remove(): void;
}

/** A CA and a server certificate in a temp dir, made by the project's certs/Makefile as a user would. */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-pki-'));
  const make = (...args: string[]) => execFileSync('make', ['-s', '-f', kMakefile, `CRT_LOCATION=${dir}`, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  make('ca');
  make('server_cert');
  const caFile = join(dir, 'ca.crt');
  return {
    dir, caFile, ca: readFileSync(caFile),
    env: (mutual) => ({
      FLEETGATE_TLS_CERT: join(dir, 'fleetgate-server.crt'), FLEETGATE_TLS_KEY: join(dir, 'fleetgate-server.key'),
      FLEETGATE_HTTPS_PORT: '0', FLEETGATE_MQTTS_PORT: 'off',
      ...(mutual && { FLEETGATE_TLS_CLIENT_CA: caFile, FLEETGATE_TLS_CLIENT_AUTH: 'optional' }),
    }),
    clientCert(secret, name) {
      make('client_cert', `CLIENT_SECRET=${secret}`, `CRT_FILE_NAME=${name}`);
      const certFile = join(dir, `${name}.crt`);
      const keyFile = join(dir, `${name}.key`);
      return { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, keyFile };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
