import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { startNats, startPostgres, type ServerProcess } from '../helpers/servers.ts';
import { until } from '../helpers/until.ts';

/**
 * Three instances on one PostgreSQL registry: a change made through one reaches the others by LISTEN/NOTIFY, so an
 * old credential is refused everywhere and the connections that depended on it are closed, within milliseconds.
 */
let nats: ServerProcess;
let postgres: Awaited<ReturnType<typeof startPostgres>>;
const gws: TestGateway[] = [];
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
const closers: (() => unknown)[] = [];
function mqttConnect(port: number, c: TestClient): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { username: c.id, password: c.secret, reconnectPeriod: 0, protocolVersion: 4 });
    closers.push(() => client.end(true));
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

const pack = '[{"n":"t","v":1}]';
const publishStatus = async (gw: TestGateway, secret: string) => (await publish(gw.http, `/http/${fleet.topic}`, secret, pack)).status;

beforeAll(async () => {
  [nats, postgres] = await Promise.all([startNats(), startPostgres()]);
  // Every instance shares the key-encryption key, as they must; failure limits off: the test uses each rotated-away
  // secret on purpose, a hundred times from one address.
  const shared = { store: await postgres.database('cluster'), bus: nats.url, keyEncryptionKey: randomBytes(32).toString('base64'), authLimit: 'false' };
  // started together: the migrations run once, under the advisory lock
  gws.push(...(await Promise.all([0, 1, 2].map(() => startGateway(shared)))));
  fleet = await provisionFleet(gws[0]!.gateway);
}, 90_000);

afterAll(async () => {
  for (const close of closers) await close();
  for (const gw of gws) await gw.close();
  await nats?.close();
  await postgres?.close();
});

describe('cluster on a PostgreSQL registry', () => {
  it('a client provisioned through A can publish through C at once', async () => {
    const device = await fleet.client('new-device', ['publish']);
    const started = Date.now();
    await until(async () => (await publishStatus(gws[2]!, device.secret)) === 202, 2_000);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('a secret rotated through A is refused on C and closes C\'s live WS and MQTT connections (p99 over 100 rotations printed)', async () => {
    const [a, , c] = [gws[0]!, gws[1]!, gws[2]!];
    const latencies: number[] = [];
    let secret = (await fleet.client('rotating', ['publish', 'subscribe'])).secret;
    const device = (await gws[0]!.gateway.provisioning.listClients(fleet.domain.id)).find((x) => x.name === 'rotating')!;
    await until(async () => (await publishStatus(c, secret)) === 202);
    for (let i = 0; i < 100; i++) {
      // cached on C (authenticated once), with a live WebSocket subscriber on C
      expect(await publishStatus(c, secret)).toBe(202);
      const ws = await WsClient.connect(`${c.ws}/ws/${fleet.topic}`, { authorization: `Client ${secret}` });
      const started = performance.now();
      const rotated = await a.gateway.provisioning.setClientSecret(fleet.domain.id, device.id, { secret: randomUUID() });
      const closed = await ws.closed;
      latencies.push(performance.now() - started);
      expect(closed.code).toBe(1008);
      expect(await publishStatus(c, secret)).toBe(401);
      secret = rotated.secret;
    }
    latencies.sort((x, y) => x - y);
    const p99 = latencies[98]!;
    console.log(`revocation to close on another instance over 100 rotations: p50 ${latencies[49]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${latencies[99]!.toFixed(1)} ms`);
    expect(p99).toBeLessThan(100);
  }, 60_000);

  it('a client disabled through B drops its MQTT connection on C and cannot connect anywhere', async () => {
    const device = await fleet.client('to-disable', ['subscribe']);
    const id = device.id;
    await until(async () => (await http('POST', `${gws[2]!.http}/http/${fleet.topic}`, { headers: { authorization: `Client ${device.secret}` } })).status !== 401);
    const client = await mqttConnect(gws[2]!.gateway.mqttPort!, device);
    const gone = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await gws[1]!.gateway.provisioning.setClientStatus(fleet.domain.id, id, 'disabled');
    await gone;
    await expect(mqttConnect(gws[0]!.gateway.mqttPort!, device)).rejects.toThrow(/Bad username or password|Not authorized/);
  });
});

describe('users across instances', () => {
  const json = (gw: TestGateway, method: string, path: string, body?: unknown, bearer?: string) => http(method, `${gw.http}${path}`, {
    headers: { 'content-type': 'application/json', ...(bearer && { authorization: `Bearer ${bearer}` }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });

  it('a refresh token is rotated once, and a recovery token used once, whichever instance each request lands on', async () => {
    const [a, b, c] = gws as [TestGateway, TestGateway, TestGateway];
    const email = `ana-${randomUUID()}@example.com`;
    expect((await json(a, 'POST', '/users', { email, password: 'at least 8 chars' })).status).toBe(201);
    const pair = (await json(b, 'POST', '/users/tokens/issue', { email, password: 'at least 8 chars' })).json;
    expect((await json(c, 'POST', '/users/tokens/refresh', undefined, pair.refresh_token)).status).toBe(201);
    // the spent refresh token, on another instance
    expect((await json(a, 'POST', '/users/tokens/refresh', undefined, pair.refresh_token)).status).toBe(401);

    expect((await json(a, 'POST', '/password/reset-request', { email })).status).toBe(201);
    const outbox = join(a.dir, 'outbox');
    await until(() => readdirSync(outbox).some((f) => readFileSync(join(outbox, f), 'utf8').includes(email)));
    const mail = readdirSync(outbox).map((f) => readFileSync(join(outbox, f), 'utf8')).find((m) => m.includes(email))!;
    const token = /\?token=([\w.-]+)/.exec(mail)![1]!;
    const reset = { password: 'a new password', confirm_password: 'a new password' };
    expect((await json(b, 'PUT', '/password/reset', reset, token)).status).toBe(201);
    expect((await json(c, 'PUT', '/password/reset', reset, token)).status).toBe(401);
    expect((await json(c, 'POST', '/users/tokens/issue', { email, password: 'a new password' })).status).toBe(201);
  });
});

describe('PostgreSQL down', () => {
  it('publishing and subscribing go on from memory, provisioning answers 503, readiness says so, and the views catch up when it is back', async () => {
    const [a, , c] = gws as [TestGateway, TestGateway, TestGateway];
    const device = await fleet.client('pg-outage', ['publish', 'subscribe']);
    await until(async () => (await publishStatus(c, device.secret)) === 202);
    const ws = await WsClient.connect(`${c.ws}/ws/${fleet.topic}`, { authorization: `Client ${device.secret}` });
    closers.push(() => ws.close());

    await postgres.kill();
    await until(async () => (await http('GET', `${c.http}/health/ready`)).status === 503, 10_000);
    expect((await http('GET', `${c.http}/health`)).json).toMatchObject({ status: 'degraded', dependencies: { store: 'down', bus: 'up' } });
    // publish on A, delivered on C: the registry is in each instance's memory, the bus is up
    expect(await publishStatus(a, device.secret)).toBe(202);
    expect(JSON.parse((await ws.next()).toString())[0].n).toBe('t');
    await expect(a.gateway.provisioning.createClient(fleet.domain.id, { name: 'during-outage' })).rejects.toMatchObject({ code: 'FG_ERR_STORE_UNAVAILABLE' });

    await postgres.restart();
    await until(async () => (await http('GET', `${c.http}/health/ready`)).status === 200, 20_000);
    const late = await fleet.client('after-outage', ['publish']);
    await until(async () => (await publishStatus(c, late.secret)) === 202, 5_000);
  }, 60_000);
});
