import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tcp } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, WsClient } from '../helpers/clients.ts';
import { cleanupPki, makePki, type TestPki } from '../helpers/certs.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

/** The resolved name of the first record of kMagistralaPack, as subscribers see it. */
// RFC 8428 §4.6: resolved records in chronological order, so the first is the earliest (t -5).
const kFirstRecord = 'some-base-name:current';

let pki: TestPki;
let other: TestPki;
const open: MqttClient[] = [];

beforeAll(() => {
  pki = makePki();
  other = makePki();
});
afterAll(() => {
  for (const c of open) c.end(true);
  cleanupPki(pki);
  cleanupPki(other);
});

interface Files {
  readonly cert: string;
  readonly key: string;
}

/** curl as in the Magistrala docs: `--cacert`, and `--cert`/`--key` when given. Status, body, and curl's exit code. */
async function curl(url: string, options: { cert?: Files; authorization?: string; body?: string; ca?: string } = {}) {
  const args = ['-sS', '-o', '-', '-w', '\n%{http_code}', '--cacert', options.ca ?? pki.ca, '-X', 'POST', '-H', 'Content-Type: application/senml+json', '-d', options.body ?? kMagistralaPack];
  if (options.cert) args.push('--cert', options.cert.cert, '--key', options.cert.key);
  if (options.authorization) args.push('-H', `Authorization: ${options.authorization}`);
  const { code, stdout, stderr } = await run('curl', [...args, url]);
  const lines = stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  const body = lines.join('\n');
  return { code, status, body: body ? (JSON.parse(body) as { code: string; message: string }) : undefined, stderr };
}

/** MQTT.js over mqtts:// or wss://, trusting the test CA, with a client certificate when given. */
function mqttConnect(url: string, cert: Files | undefined, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const tls = { ca: readFileSync(pki.ca), ...(cert && { cert: readFileSync(cert.cert), key: readFileSync(cert.key) }) };
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...tls, wsOptions: tls, ...options });
    open.push(client);
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}

const wsTls = (cert?: Files) => ({ ca: readFileSync(pki.ca), ...(cert && { cert: readFileSync(cert.cert), key: readFileSync(cert.key) }) });

describe('mutual TLS, client certificates optional (CN = client secret)', () => {
  let gw: TestGateway;
  let fleet: Awaited<ReturnType<typeof provisionFleet>>;
  let device: TestClient;
  let app: TestClient;
  let deviceCert: Files;
  let appCert: Files;
  let revokedCert: Files;
  let https: string;

  beforeAll(async () => {
    // Secrets chosen first, so that the certificates (one of them revoked) exist before the gateway reads the CRL.
    const secrets = { device: randomBytes(16).toString('hex'), app: randomBytes(16).toString('hex') };
    deviceCert = pki.client('device', secrets.device);
    appCert = pki.client('app', secrets.app);
    revokedCert = pki.client('revoked', secrets.device);
    pki.revoke(revokedCert.cert);
    gw = await startGateway({ tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsClientCa: pki.ca, tlsClientCrl: pki.crl });
    fleet = await provisionFleet(gw.gateway);
    device = await fleet.client('device', ['publish'], { secret: secrets.device });
    app = await fleet.client('app', ['subscribe'], { secret: secrets.app });
    https = `https://localhost:${gw.gateway.httpsPort}`;
  });
  afterAll(() => gw.close());

  it('HTTPS: the certificate is the credential; an Authorization header must name the same secret', async () => {
    const url = `${https}/http/${fleet.topic}`;
    expect(await curl(url, { cert: deviceCert })).toMatchObject({ status: 202 });
    expect(await curl(url, { cert: deviceCert, authorization: `Client ${device.secret}` })).toMatchObject({ status: 202 });
    expect(await curl(url, { cert: deviceCert, authorization: `Client ${app.secret}` })).toMatchObject({
      status: 403, body: { code: 'FG_ERR_AUTHZ_FORBIDDEN', message: 'credential does not match the client certificate' },
    });
    // The certificate of a client without the right to publish does not publish.
    expect(await curl(url, { cert: appCert })).toMatchObject({ status: 403 });
    // Optional mode: no certificate, the usual credentials.
    expect(await curl(url, { authorization: `Client ${device.secret}` })).toMatchObject({ status: 202 });
    expect(await curl(url)).toMatchObject({ status: 401, body: { code: 'FG_ERR_AUTHN_MISSING' } });
  });

  it('refuses a certificate of another CA, an expired one and a revoked one, saying why', async () => {
    const url = `${https}/http/${fleet.topic}`;
    const foreign = other.client('foreign', device.secret);
    const expired = pki.expiredClient('expired', device.secret);
    for (const [cert, reason] of [[foreign, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'], [expired, 'CERT_HAS_EXPIRED'], [revokedCert, 'CERT_REVOKED']] as const) {
      expect(await curl(url, { cert }), reason).toMatchObject({ status: 401, body: { code: 'FG_ERR_AUTHN_INVALID', message: `client certificate refused: ${reason}` } });
    }
    // The same secret in a good certificate works.
    expect(await curl(url, { cert: deviceCert })).toMatchObject({ status: 202 });
  });

  it('limits the chain: a certificate from an intermediate CA needs FLEETGATE_TLS_CLIENT_DEPTH=2', async () => {
    const chained = pki.intermediateClient('chained', device.secret);
    // No CRL here: with one, OpenSSL wants a CRL from the intermediate CA as well (UNABLE_TO_GET_CRL).
    for (const [depth, expected] of [
      [1, { status: 401, body: { code: 'FG_ERR_AUTHN_INVALID', message: 'client certificate refused: chain has 2 CA certificates, FLEETGATE_TLS_CLIENT_DEPTH allows 1' } }],
      [2, { status: 202 }],
    ] as const) {
      const deeper = await startGateway({ tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsClientCa: pki.ca, tlsClientDepth: depth, store: gw.config.store });
      try {
        expect(await curl(`https://localhost:${deeper.gateway.httpsPort}/http/${fleet.topic}`, { cert: chained }), `depth ${depth}`).toMatchObject(expected);
      } finally {
        await deeper.close();
      }
    }
  });

  it('WSS: a WebSocket with its certificate subscribes and receives what an HTTPS publish sends', async () => {
    const sub = await WsClient.connect(`wss://localhost:${gw.gateway.httpsPort}/ws/${fleet.topic}`, {}, undefined, wsTls(appCert));
    expect(await curl(`${https}/http/${fleet.topic}`, { cert: deviceCert })).toMatchObject({ status: 202 });
    expect(JSON.parse((await sub.next()).toString())[0]).toMatchObject({ n: kFirstRecord });
    sub.close();
    // ?authorization= must match the certificate.
    await expect(WsClient.connect(`wss://localhost:${gw.gateway.httpsPort}/ws/${fleet.topic}?authorization=${device.secret}`, {}, undefined, wsTls(appCert)))
      .rejects.toMatchObject({ status: 403, body: { code: 'FG_ERR_AUTHZ_FORBIDDEN' } });
  });

  it('MQTTS with mosquitto_pub/sub and a client certificate, as in the Magistrala docs', async () => {
    const port = String(gw.gateway.mqttsPort);
    const tlsArgs = (cert: Files) => ['--cafile', pki.ca, '--cert', cert.cert, '--key', cert.key];
    const sub = run('mosquitto_sub', ['-u', app.id, '-P', app.secret, '-t', fleet.topic, '-h', 'localhost', '-p', port, ...tlsArgs(appCert), '-C', '1', '-W', '10']);
    await new Promise((r) => setTimeout(r, 300));
    const pub = await run('mosquitto_pub', ['-u', device.id, '-P', device.secret, '-t', fleet.topic, '-h', 'localhost', '-p', port, ...tlsArgs(deviceCert), '-m', kMagistralaPack]);
    expect(pub.code, pub.stderr).toBe(0);
    const got = await sub;
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)[0]).toMatchObject({ n: kFirstRecord });
  });

  it('MQTTS: a password other than the CN gets CONNACK 5; no password, the certificate alone; none, the secret', async () => {
    const url = `mqtts://localhost:${gw.gateway.mqttsPort}`;
    await expect(mqttConnect(url, deviceCert, { username: device.id, password: app.secret })).rejects.toMatchObject({ code: 5 });
    await expect(mqttConnect(url, deviceCert, { username: app.id, password: device.secret })).rejects.toMatchObject({ code: 5 });
    expect((await mqttConnect(url, deviceCert, { clientId: 'cert-only' })).connected).toBe(true);
    expect((await mqttConnect(url, undefined, { username: device.id, password: device.secret })).connected).toBe(true);
    await expect(mqttConnect(url, other.client('foreign-mqtt', device.secret), {})).rejects.toMatchObject({ code: 4 });
  });

  it('MQTT over WSS with a client certificate', async () => {
    const url = `wss://localhost:${gw.gateway.httpsPort}/mqtt`;
    const sub = await mqttConnect(url, appCert, { clientId: 'wss-sub' });
    await new Promise((resolve) => sub.subscribe(fleet.topic, resolve));
    const got = new Promise<string>((resolve) => sub.once('message', (_t, p) => resolve(JSON.parse(p.toString())[0].n)));
    const pub = await mqttConnect(url, deviceCert, { clientId: 'wss-pub' });
    pub.publish(fleet.topic, kMagistralaPack);
    expect(await got).toBe(kFirstRecord);
    await expect(mqttConnect(url, deviceCert, { clientId: 'wss-wrong', username: device.id, password: app.secret })).rejects.toMatchObject({ code: 5 });
  });

  it('a PROXY header sent to a public port gains nothing', async () => {
    // A PROXY v2 header naming some "address", then a request with no credential, on the plain HTTP port.
    const header = Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x24]),
      Buffer.alloc(36, 0xab),
    ]);
    const request = `POST /http/${fleet.topic} HTTP/1.1\r\nHost: x\r\nContent-Type: application/senml+json\r\nContent-Length: ${kMagistralaPack.length}\r\n\r\n${kMagistralaPack}`;
    const socket = tcp(gw.gateway.httpPort!, '127.0.0.1');
    socket.write(Buffer.concat([header, Buffer.from(request)]));
    const reply = await new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
    socket.destroy();
    // refused before anything else: the peer is not a trusted proxy (FLEETGATE_TRUSTED_PROXIES)
    expect(reply).toMatch(/^HTTP\/1\.1 403/);
    expect(reply).toContain('FG_ERR_PROXY_UNTRUSTED');
  });
});

describe('mutual TLS, client certificates required', () => {
  let gw: TestGateway;
  let fleet: Awaited<ReturnType<typeof provisionFleet>>;
  let device: TestClient;

  beforeAll(async () => {
    gw = await startGateway({ tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsClientCa: pki.ca, tlsClientAuth: 'required', plain: 'off' });
    fleet = await provisionFleet(gw.gateway);
    device = await fleet.client('device', ['publish', 'subscribe']);
  });
  afterAll(() => gw.close());

  it('no certificate, no handshake, on HTTPS and MQTTS; a good certificate works; no plain listeners', async () => {
    expect(gw.gateway.httpPort).toBeNull();
    expect(gw.gateway.mqttPort).toBeNull();
    const url = `https://localhost:${gw.gateway.httpsPort}/http/${fleet.topic}`;
    const refused = await curl(url, { authorization: `Client ${device.secret}` });
    expect(refused.code).not.toBe(0);
    expect(refused.status).toBe(0);
    await expect(mqttConnect(`mqtts://localhost:${gw.gateway.mqttsPort}`, undefined, { username: device.id, password: device.secret })).rejects.toThrow();
    const cert = pki.client('required', device.secret);
    expect(await curl(url, { cert })).toMatchObject({ status: 202 });
    expect((await mqttConnect(`mqtts://localhost:${gw.gateway.mqttsPort}`, cert, {})).connected).toBe(true);
  });
});

describe('server TLS only (no client CA): uWebSockets.js terminates HTTPS and WSS', () => {
  let gw: TestGateway;
  let fleet: Awaited<ReturnType<typeof provisionFleet>>;
  let device: TestClient;

  beforeAll(async () => {
    gw = await startGateway({ tlsCert: pki.serverCert, tlsKey: pki.serverKey });
    fleet = await provisionFleet(gw.gateway);
    device = await fleet.client('device', ['publish', 'subscribe']);
  });
  afterAll(() => gw.close());

  it('HTTPS, WSS, MQTTS and MQTT over WSS with the usual credentials; a certificate changes nothing', async () => {
    const https = `https://localhost:${gw.gateway.httpsPort}`;
    const sub = await WsClient.connect(`wss://localhost:${gw.gateway.httpsPort}/ws/${fleet.topic}?authorization=${device.secret}`, {}, undefined, wsTls());
    const mqttSub = await mqttConnect(`mqtts://localhost:${gw.gateway.mqttsPort}`, undefined, { username: device.id, password: device.secret });
    await new Promise((resolve) => mqttSub.subscribe(fleet.topic, resolve));
    const atMqtt = new Promise<string>((resolve) => mqttSub.once('message', (_t, p) => resolve(JSON.parse(p.toString())[0].n)));
    expect(await curl(`${https}/http/${fleet.topic}`, { authorization: `Client ${device.secret}` })).toMatchObject({ status: 202 });
    expect(JSON.parse((await sub.next()).toString())[0].n).toBe(kFirstRecord);
    expect(await atMqtt).toBe(kFirstRecord);
    sub.close();
    expect(await curl(`${https}/http/${fleet.topic}`, { cert: pki.client('ignored', device.secret) })).toMatchObject({ status: 401 });
    const overWss = await mqttConnect(`wss://localhost:${gw.gateway.httpsPort}/mqtt`, undefined, { username: device.id, password: device.secret });
    expect(overWss.connected).toBe(true);
  });
});

describe('mutual TLS with CN = client id (FLEETGATE_TLS_IDENTITY=client_id)', () => {
  it('the certificate names the client; a secret sent alongside must be that client\'s own', async () => {
    const gw = await startGateway({ tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsClientCa: pki.ca, tlsIdentity: 'client_id' });
    try {
      const fleet = await provisionFleet(gw.gateway);
      const device = await fleet.client('device', ['publish']);
      const stranger = await fleet.client('stranger', []);
      const cert = pki.client('by-id', device.id);
      const url = `https://localhost:${gw.gateway.httpsPort}/http/${fleet.topic}`;
      expect(await curl(url, { cert })).toMatchObject({ status: 202 });
      expect(await curl(url, { cert, authorization: `Client ${device.secret}` })).toMatchObject({ status: 202 });
      expect(await curl(url, { cert, authorization: `Client ${stranger.secret}` })).toMatchObject({ status: 403, body: { code: 'FG_ERR_AUTHZ_FORBIDDEN' } });
      // A certificate whose CN is a secret names no client in this mode.
      expect(await curl(url, { cert: pki.client('by-secret', device.secret) })).toMatchObject({ status: 401 });
      const mqtts = `mqtts://localhost:${gw.gateway.mqttsPort}`;
      expect((await mqttConnect(mqtts, cert, { username: device.id, password: device.secret })).connected).toBe(true);
      await expect(mqttConnect(mqtts, cert, { username: device.id, password: stranger.secret })).rejects.toMatchObject({ code: 5 });
    } finally {
      await gw.close();
    }
  });
});

describe('bad TLS files at start', () => {
  it('refuse to start, naming what is wrong: a missing file, a key that is not the certificate\'s, a file with no CRL', async () => {
    await expect(startGateway({ tlsCert: join(pki.dir, 'missing.crt'), tlsKey: pki.serverKey })).rejects.toThrow(/ENOENT.*missing\.crt/);
    await expect(startGateway({ tlsCert: pki.serverCert, tlsKey: other.serverKey })).rejects.toThrow(/key values mismatch/);
    await expect(startGateway({ tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsClientCa: pki.ca, tlsClientCrl: pki.ca })).rejects.toThrow('no X509 CRL in the file');
  });
});

describe('reloading certificates without a restart (SIGHUP)', () => {
  /** Server certificate and key at paths the test may overwrite, as certbot or an operator would. */
  const serverFiles = (from: TestPki) => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetgate-server-'));
    const files = { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), dir };
    copyFileSync(from.serverCert, files.cert);
    copyFileSync(from.serverKey, files.key);
    return files;
  };
  const swap = (files: { cert: string; key: string }, to: TestPki) => {
    copyFileSync(to.serverCert, files.cert);
    copyFileSync(to.serverKey, files.key);
  };

  it('mutual TLS: a revocation and a new server certificate apply to new connections; bad files keep the old ones', async () => {
    const files = serverFiles(pki);
    const secret = randomBytes(16).toString('hex');
    const cert = pki.client('to-revoke', secret);
    const gw = await startGateway({ tlsCert: files.cert, tlsKey: files.key, tlsClientCa: pki.ca, tlsClientCrl: pki.crl });
    try {
      const fleet = await provisionFleet(gw.gateway);
      const device = await fleet.client('device', ['publish'], { secret });
      const url = `https://localhost:${gw.gateway.httpsPort}/http/${fleet.topic}`;
      const mqtts = `mqtts://localhost:${gw.gateway.mqttsPort}`;
      expect(await curl(url, { cert })).toMatchObject({ status: 202 });
      const before = await mqttConnect(mqtts, cert, { clientId: 'before-revocation' });

      pki.revoke(cert.cert);
      await gw.gateway.reloadTls();
      expect(await curl(url, { cert })).toMatchObject({ status: 401, body: { message: 'client certificate refused: CERT_REVOKED' } });
      await expect(mqttConnect(mqtts, cert, { clientId: 'after-revocation' })).rejects.toMatchObject({ code: 4 });
      // Open connections keep what they were admitted with.
      expect(before.connected).toBe(true);

      swap(files, other);
      await gw.gateway.reloadTls();
      expect(await curl(url, { ca: other.ca, authorization: `Client ${device.secret}` })).toMatchObject({ status: 202 });
      expect((await curl(url, { authorization: `Client ${device.secret}` })).code).not.toBe(0);

      writeFileSync(files.key, 'not a key');
      await expect(gw.gateway.reloadTls()).rejects.toThrow();
      expect(await curl(url, { ca: other.ca, authorization: `Client ${device.secret}` })).toMatchObject({ status: 202 });
    } finally {
      await gw.close();
      rmSync(files.dir, { recursive: true, force: true });
    }
  });

  it('server TLS only: FLEETGATE_TLS_TERMINATOR=node serves a new certificate after a reload; uws keeps the old one', async () => {
    for (const terminator of ['node', 'uws'] as const) {
      const files = serverFiles(pki);
      const gw = await startGateway({ tlsCert: files.cert, tlsKey: files.key, tlsTerminator: terminator });
      try {
        const fleet = await provisionFleet(gw.gateway);
        const device = await fleet.client('device', ['publish']);
        const url = `https://localhost:${gw.gateway.httpsPort}/http/${fleet.topic}`;
        const [before, after] = [{ authorization: `Client ${device.secret}` }, { ca: other.ca, authorization: `Client ${device.secret}` }];
        expect(await curl(url, before)).toMatchObject({ status: 202 });
        swap(files, other);
        await gw.gateway.reloadTls();
        expect(await curl(url, terminator === 'node' ? after : before), terminator).toMatchObject({ status: 202 });
        expect((await curl(url, terminator === 'node' ? before : after)).code, terminator).not.toBe(0);
      } finally {
        await gw.close();
        rmSync(files.dir, { recursive: true, force: true });
      }
    }
  });
});
