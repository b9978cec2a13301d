import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { startNats, type ServerProcess } from '../helpers/servers.ts';
import { until, wait } from '../helpers/until.ts';

/**
 * MQTT shared subscriptions across three instances on one NATS bus: whichever instance accepts a message, over
 * whichever protocol, exactly one member of the group gets it, wherever the members are connected.
 */
let nats: ServerProcess;
let dir: string;
const gws: TestGateway[] = [];
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let app: TestClient;
const closers: (() => unknown)[] = [];

async function mqttConnect(gw: TestGateway, c: TestClient, protocolVersion: 4 | 5): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, { username: c.id, password: c.secret, reconnectPeriod: 0, protocolVersion });
  closers.push(() => client.end(true));
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return client;
}

/** A member of `$share/<group>/<topic>` on an instance; records the names it receives. */
async function member(gw: TestGateway, group: string, topic: string, protocolVersion: 4 | 5 = 5): Promise<{ client: MqttClient; got: string[] }> {
  const client = await mqttConnect(gw, app, protocolVersion);
  const got: string[] = [];
  client.on('message', (t, payload) => {
    expect(t).toBe(topic);
    got.push(JSON.parse(payload.toString())[0].n);
  });
  await client.subscribeAsync(`$share/${group}/${topic}`, { qos: 1 });
  return { client, got };
}

const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);

/** Publishes each name through `gw`, over HTTP, MQTT and WebSocket in turn. */
async function publishThrough(gw: TestGateway, topic: string, all: string[]): Promise<void> {
  const pub = await mqttConnect(gw, device, 4);
  const ws = await WsClient.connect(`${gw.ws}/ws/${topic}`, { authorization: `Client ${device.secret}` });
  for (const [i, n] of all.entries()) {
    if (i % 3 === 0) expect((await publish(gw.http, `/http/${topic}`, device.secret, pack(n))).status).toBe(202);
    else if (i % 3 === 1) await pub.publishAsync(topic, pack(n), { qos: 1 });
    else ws.send(pack(n));
  }
  await wait(100);
  ws.close();
  await pub.endAsync();
}

beforeAll(async () => {
  nats = await startNats();
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-cluster-shared-'));
  const shared = { store: `sqlite:${join(dir, 'shared.db')}`, bus: nats.url, storePollInterval: 20 };
  for (let i = 0; i < 3; i++) gws.push(await startGateway(shared));
  fleet = await provisionFleet(gws[0]!.gateway);
  device = await fleet.client('device', ['publish']);
  app = await fleet.client('app', ['subscribe']);
  // every instance knows the new clients (from the store's change log)
  for (const gw of gws) await until(async () => (await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack('warmup'))).status === 202);
}, 90_000);

afterAll(async () => {
  for (const close of closers) await close();
  for (const gw of gws) await gw.close();
  await nats?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('shared subscriptions across instances', () => {
  it.each([
    ['a third instance', 2],
    ['an instance with members', 0],
  ])('messages accepted by %s go to exactly one member across the cluster, members on both instances get some', async (_, at) => {
    const topic = `${fleet.topic}/shared-${at}`;
    const [a, b] = [gws[0]!, gws[1]!];
    const members = [await member(a, 'backend', topic), await member(a, 'backend', topic, 4), await member(b, 'backend', topic)];
    // a plain subscriber on the third instance still gets everything
    const plain = await mqttConnect(gws[2]!, app, 5);
    const plainGot: string[] = [];
    plain.on('message', (_t, payload) => plainGot.push(JSON.parse(payload.toString())[0].n));
    await plain.subscribeAsync(topic);
    await wait(200); // the bus subscriptions of the instances are in place
    const all = Array.from({ length: 60 }, (_, i) => `m-${at}-${i}`);
    await publishThrough(gws[at]!, topic, all);
    await until(() => members.reduce((n, m) => n + m.got.length, 0) >= all.length && plainGot.length >= all.length, 10_000);
    await wait(300);
    expect(members.flatMap((m) => m.got).sort()).toEqual([...all].sort());
    expect(members[0]!.got.length + members[1]!.got.length).toBeGreaterThan(0);
    expect(members[2]!.got.length).toBeGreaterThan(0);
    expect(plainGot).toEqual(all);
  });

  it('a group whose members all left gets nothing; members that join later on another instance get what follows', async () => {
    const topic = `${fleet.topic}/rejoin`;
    const first = await member(gws[0]!, 'late', topic);
    await wait(200);
    await first.client.endAsync();
    await wait(200);
    expect((await publish(gws[2]!.http, `/http/${topic}`, device.secret, pack('nobody'))).status).toBe(202);
    const later = await member(gws[1]!, 'late', topic);
    await wait(200);
    expect((await publish(gws[2]!.http, `/http/${topic}`, device.secret, pack('later'))).status).toBe(202);
    await until(() => later.got.length >= 1);
    await wait(300);
    expect(later.got).toEqual(['later']);
    expect(first.got).toEqual([]);
  });
});

describe('shared subscriptions when NATS fails', () => {
  it('members of an instance get the messages it accepts while the bus is down; the cluster shares again once it is back', async () => {
    const topic = `${fleet.topic}/bus-down`;
    const [a, b] = [gws[0]!, gws[1]!];
    const atA = await member(a, 'outage', topic);
    const atB = await member(b, 'outage', topic);
    await wait(200);
    await nats.kill();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 503, 15_000);
    const down = ['down-1', 'down-2', 'down-3'];
    for (const n of down) expect((await publish(a.http, `/http/${topic}`, device.secret, pack(n))).status).toBe(202);
    await until(() => atA.got.length === down.length);
    expect(atB.got).toEqual([]);

    await nats.restart();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 200 && (await http('GET', `${b.http}/health/ready`)).status === 200, 15_000);
    await wait(500);
    atA.got.length = 0;
    const up = Array.from({ length: 30 }, (_, i) => `up-${i}`);
    for (const n of up) expect((await publish(gws[2]!.http, `/http/${topic}`, device.secret, pack(n))).status).toBe(202);
    await until(() => atA.got.length + atB.got.length >= up.length, 10_000);
    await wait(300);
    expect([...atA.got, ...atB.got].sort()).toEqual([...up].sort());
    expect(atB.got.length).toBeGreaterThan(0);
  }, 60_000);
});
