import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestSecret } from '../../src/auth/secret.ts';
import { createLogger } from '../../src/log.ts';
import { http, publish, run, WsClient } from '../helpers/clients.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';

const kMain = join(import.meta.dirname, '../../dist/main.js');
const admin = { email: 'auditor@example.com', password: 'the admin password 42' };
const kWrongPassword = 'not the admin password 17';
const kWrongSecrets = { http: 'wrong-http-secret-0001', basic: 'wrong-basic-secret-0002', ws: 'wrong-ws-secret-0003', mqtt: 'wrong-mqtt-secret-0004' };

let dir: string;
let gw: TestGateway;
let mainLog: string;
let auditLog: string;
/** every credential, token and password the test sends: none may appear in either log */
const credentials: string[] = [admin.password, kWrongPassword, ...Object.values(kWrongSecrets)];
let audit: Record<string, unknown>[];
let main: Record<string, unknown>[];
let adminId: string;
let deviceId: string;
let readerId: string;
let topic: string;

const json = { 'content-type': 'application/json' };
const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  http(method, gw.http + path, { headers: { ...json, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
const pack = JSON.stringify([{ n: 'audit', v: 1 }]);

function mqttConnect(username: string, password: string, clientId: string, url = `mqtt://127.0.0.1:${gw.gateway.mqttPort}`): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, username, password, clientId });
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-audit-'));
  mainLog = join(dir, 'main.log');
  auditLog = join(dir, 'logs', 'audit.log');
  const logger = createLogger('trace', pino.destination({ dest: mainLog, sync: true }));
  gw = await startGateway({ logLevel: 'trace', auditLog, adminEmail: admin.email, adminPassword: admin.password }, { logger });

  // Password logins, right and wrong; a refresh.
  const tokens = await api('POST', '/users/tokens/issue', admin);
  expect(tokens.status).toBe(201);
  const { access_token: access, refresh_token: refresh } = tokens.json as { access_token: string; refresh_token: string };
  credentials.push(access, refresh, access.split('.')[2]!, refresh.split('.')[2]!);
  expect((await api('POST', '/users/tokens/issue', { email: admin.email, password: kWrongPassword })).status).toBe(401);
  const refreshed = await api('POST', '/users/tokens/refresh', undefined, { authorization: `Bearer ${refresh}` });
  expect(refreshed.status).toBe(201);
  credentials.push(refreshed.json.access_token, refreshed.json.refresh_token);
  const auth = { authorization: `Bearer ${access}` };
  /** a token no one has verified yet */
  const fresh = { authorization: `Bearer ${refreshed.json.access_token}` };
  adminId = (await api('GET', '/users/profile', undefined, auth)).json.id;

  // Provisioning through the API: secrets come back in the answers, never in the logs.
  const domain = (await api('POST', '/domains', { name: 'audited' }, auth)).json;
  const channel = (await api('POST', `/${domain.id}/channels`, { name: 'tele' }, auth)).json;
  const device = (await api('POST', `/${domain.id}/clients`, { name: 'device' }, auth)).json;
  const reader = (await api('POST', `/${domain.id}/clients`, { name: 'reader', secret: 'reader-chosen-secret-9' }, auth)).json;
  expect((await api('POST', `/${domain.id}/channels/connect`, { client_ids: [device.id], channel_ids: [channel.id], types: ['publish'] }, auth)).status).toBe(201);
  expect((await api('POST', `/${domain.id}/channels/connect`, { client_ids: [reader.id], channel_ids: [channel.id], types: ['subscribe'] }, auth)).status).toBe(201);
  const rotated = await api('PATCH', `/${domain.id}/clients/${reader.id}/secret`, { secret: 'reader-rotated-secret-7' }, auth);
  expect(rotated.status).toBe(200);
  credentials.push(device.secret, reader.secret, 'reader-rotated-secret-7');
  [deviceId, readerId, topic] = [device.id, reader.id, `m/${domain.id}/c/${channel.id}`];
  const readerSecret = 'reader-rotated-secret-7';

  // HTTP publish: a client secret, Basic, a JWT; a wrong secret and wrong Basic.
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  credentials.push(basic(device.id, device.secret).slice(6), basic(device.id, kWrongSecrets.basic).slice(6));
  expect((await publish(gw.http, `/http/${topic}`, device.secret, pack)).status).toBe(202);
  expect((await publish(gw.http, `/http/${topic}`, undefined, pack, { 'content-type': 'application/senml+json', authorization: basic(device.id, device.secret) })).status).toBe(202);
  expect((await publish(gw.http, `/http/${topic}`, undefined, pack, { 'content-type': 'application/senml+json', ...fresh })).status).toBe(202);
  expect((await publish(gw.http, `/http/${topic}`, kWrongSecrets.http, pack)).status).toBe(401);
  expect((await publish(gw.http, `/http/${topic}`, undefined, pack, { 'content-type': 'application/senml+json', authorization: basic(device.id, kWrongSecrets.basic) })).status).toBe(401);
  // The reader may not publish: a refused right.
  expect((await publish(gw.http, `/http/${topic}`, readerSecret, pack)).status).toBe(403);

  // WebSocket: a secret, a JWT, a wrong secret.
  const ws = await WsClient.connect(`${gw.ws}/ws/${topic}?authorization=${readerSecret}`);
  const wsJwt = await WsClient.connect(`${gw.ws}/ws/${topic}`, auth);
  await expect(WsClient.connect(`${gw.ws}/ws/${topic}?authorization=${kWrongSecrets.ws}`)).rejects.toMatchObject({ status: 401 });
  ws.close();
  wsJwt.close();

  // MQTT: id + secret, a JWT as password, a wrong secret; the reader publishing is refused (3.1.1: closed).
  const sub = await mqttConnect(reader.id, readerSecret, 'reader-session');
  const jwtClient = await mqttConnect('', access, 'jwt-session');
  const overWs = await mqttConnect(reader.id, readerSecret, 'ws-session', `${gw.ws}/mqtt`);
  overWs.end(true);
  await expect(mqttConnect(device.id, kWrongSecrets.mqtt, 'bad-session')).rejects.toThrow();
  const closed = new Promise<void>((resolve) => sub.once('close', () => resolve()));
  sub.publish(topic, pack);
  await closed;
  sub.end(true);
  jwtClient.end(true);
  // An API call with a made-up token.
  expect((await api('GET', '/users/profile', undefined, { authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl' })).status).toBe(401);

  await gw.close();
  audit = lines(auditLog);
  main = lines(mainLog);
  // Digests of the secrets are as good as the secrets to whoever reads the log.
  for (const secret of [device.secret, readerSecret, ...Object.values(kWrongSecrets)]) credentials.push(digestSecret(secret));
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const find = (events: Record<string, unknown>[], match: Record<string, unknown>) => events.filter((e) => Object.entries(match).every(([k, v]) => e[k] === v));

describe('audit stream (FLEETGATE_AUDIT_LOG=<file>), with the main log at trace', () => {
  it('holds no credential, token or password, nor does the main log', () => {
    const [mainText, auditText] = [readFileSync(mainLog, 'utf8'), readFileSync(auditLog, 'utf8')];
    expect(main.some((e) => e.msg === 'listening')).toBe(true);
    for (const credential of credentials) {
      expect(mainText.includes(credential), `main log holds ${credential}`).toBe(false);
      expect(auditText.includes(credential), `audit log holds ${credential}`).toBe(false);
    }
  });

  it('is a 0600 file of JSON lines marked audit:true', () => {
    expect(statSync(auditLog).mode & 0o777).toBe(0o600);
    expect(audit.every((e) => e.audit === true && typeof e.event === 'string')).toBe(true);
  });

  it('records every authentication decision: protocol, address, credential kind, who, result and code', () => {
    const local = expect.stringMatching(/127\.0\.0\.1/);
    expect(find(audit, { event: 'authn', protocol: 'api', credential: 'password', username: admin.email, result: 'ok' })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'api', credential: 'password', username: admin.email, result: 'refused' })).toEqual([
      expect.objectContaining({ code: 'FG_ERR_AUTHN_INVALID', remote: local }),
    ]);
    expect(find(audit, { event: 'authn', protocol: 'api', credential: 'refresh', result: 'ok' })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'api', credential: 'bearer', result: 'refused' })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'http', credential: 'secret', result: 'refused' })).toEqual([expect.objectContaining({ code: 'FG_ERR_AUTHN_INVALID', remote: local })]);
    expect(find(audit, { event: 'authn', protocol: 'http', credential: 'basic', result: 'refused', username: deviceId })).toHaveLength(1);
    // HTTP publish: a token is audited when the workers verify it; a secret is looked up per request, so its
    // successes would be a line per message (they are counted in fleetgate_authentications_total instead).
    expect(find(audit, { event: 'authn', protocol: 'http', credential: 'bearer', result: 'ok', kind: 'user', id: adminId })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'http', credential: 'basic', result: 'ok' })).toHaveLength(0);
    expect(find(audit, { event: 'authn', protocol: 'ws', credential: 'secret', result: 'ok', kind: 'client', id: readerId })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'ws', credential: 'bearer', result: 'ok', kind: 'user', id: adminId })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'ws', credential: 'secret', result: 'refused', code: 'FG_ERR_AUTHN_INVALID' })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'mqtt', credential: 'basic', result: 'ok', id: readerId, mqtt_client_id: 'reader-session' })).toEqual([expect.objectContaining({ remote: local })]);
    expect(find(audit, { event: 'authn', protocol: 'mqtt', credential: 'bearer', result: 'ok', id: adminId })).toHaveLength(1);
    expect(find(audit, { event: 'authn', protocol: 'mqtt-ws', credential: 'basic', result: 'ok', id: readerId })).toEqual([expect.objectContaining({ remote: local })]);
    expect(find(audit, { event: 'authn', protocol: 'mqtt', credential: 'basic', result: 'refused', username: deviceId, mqtt_client_id: 'bad-session', code: 'FG_ERR_AUTHN_INVALID' })).toHaveLength(1);
  });

  it('records refused rights with who, where and what', () => {
    expect(find(audit, { event: 'authz', protocol: 'http', action: 'publish', kind: 'client', id: readerId, code: 'FG_ERR_AUTHZ_FORBIDDEN', target: `/http/${topic}` })).toHaveLength(1);
    expect(find(audit, { event: 'authz', protocol: 'mqtt', action: 'publish', kind: 'client', id: readerId, mqtt_client_id: 'reader-session', target: topic })).toEqual([
      expect.objectContaining({ code: 'FG_ERR_AUTHZ_FORBIDDEN', remote: expect.stringMatching(/127\.0\.0\.1/) }),
    ]);
  });

  it('records registry changes with their actor (the admin) and ids', () => {
    const changes = find(audit, { event: 'change', actor: adminId });
    expect(changes.map((c) => c.op)).toEqual(['domain.create', 'channel.create', 'client.create', 'client.create', 'connect', 'connect', 'client.secret']);
    expect(changes[2]).toMatchObject({ client_id: deviceId, domain_id: expect.any(String) });
  });

  it('puts every refusal in the main log at info, with protocol, address, who and FG_ERR code', () => {
    const refusals = main.filter((e) => e.level === 30 && e.result === 'refused');
    expect(refusals.length).toBe(audit.filter((e) => e.result === 'refused').length);
    expect(find(main, { level: 30, msg: 'publish refused', protocol: 'mqtt', id: readerId, username: readerId, mqtt_client_id: 'reader-session', remote: '127.0.0.1', code: 'FG_ERR_AUTHZ_FORBIDDEN' })).toHaveLength(1);
    expect(find(main, { level: 30, msg: 'authentication refused', protocol: 'http', code: 'FG_ERR_AUTHN_INVALID' })).toHaveLength(2);
    expect(main.some((e) => e.audit === true)).toBe(false);
  });
});

describe('audit stream of the CLI', () => {
  it('goes to stderr when FLEETGATE_AUDIT_LOG=stdout: the command still answers JSON on stdout; changes are by `cli`', async () => {
    const cliDir = mkdtempSync(join(tmpdir(), 'fleetgate-audit-cli-'));
    try {
      const env = { ...process.env, FLEETGATE_STORE: `sqlite:${join(cliDir, 'fleetgate.db')}`, FLEETGATE_AUDIT_LOG: 'stdout' };
      const created = await run(process.execPath, [kMain, 'provision', 'domain', 'create', '--name', 'from-cli'], { env });
      expect(created.code, created.stderr).toBe(0);
      const domain = JSON.parse(created.stdout);
      expect(JSON.parse(created.stderr.trim())).toMatchObject({ audit: true, event: 'change', actor: 'cli', op: 'domain.create', domain_id: domain.id });
      const off = await run(process.execPath, [kMain, 'provision', 'domain', 'create', '--name', 'quiet'], { env: { ...env, FLEETGATE_AUDIT_LOG: 'off' } });
      expect(off).toMatchObject({ code: 0, stderr: '' });
    } finally {
      rmSync(cliDir, { recursive: true, force: true });
    }
  });
});
