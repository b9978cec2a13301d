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
 * Three instances on one NATS bus and one store: a message accepted by any instance, over any protocol, reaches the
 * subscribers of every instance, over every protocol, once, in publish order.
 */
let nats: ServerProcess;
let dir: string;
const gws: TestGateway[] = [];
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let app: TestClient;
const closers: (() => unknown)[] = [];

function mqttConnect(port: number, c: TestClient, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { username: c.id, password: c.secret, reconnectPeriod: 0, protocolVersion: 4, ...options });
    closers.push(() => client.end(true));
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

/** A subscriber on one instance over WebSocket or MQTT that collects what arrives. */
async function subscriber(kind: 'ws' | 'mqtt', gw: TestGateway, topic: string): Promise<{ received: string[] }> {
  const received: string[] = [];
  if (kind === 'ws') {
    const ws = await WsClient.connect(`${gw.ws}/ws/${topic}`, { authorization: `Client ${app.secret}` });
    closers.push(() => ws.close());
    ws.socket.on('message', (data: Buffer) => received.push(data.toString()));
  } else {
    const client = await mqttConnect(gw.gateway.mqttPort!, app);
    await client.subscribeAsync(topic, { qos: 0 });
    client.on('message', (_t, payload) => received.push(payload.toString()));
  }
  return { received };
}

/** Publishes `n` over a protocol through an instance. */
async function publishOver(kind: 'http' | 'ws' | 'mqtt', gw: TestGateway, topic: string, names: string[]): Promise<void> {
  const packs = names.map((n) => JSON.stringify([{ n, v: 1 }]));
  if (kind === 'http') {
    for (const p of packs) expect((await publish(gw.http, `/http/${topic}`, device.secret, p)).status).toBe(202);
  } else if (kind === 'ws') {
    const ws = await WsClient.connect(`${gw.ws}/ws/${topic}`, { authorization: `Client ${device.secret}` });
    for (const p of packs) ws.send(p);
    await wait(100);
    ws.close();
  } else {
    const client = await mqttConnect(gw.gateway.mqttPort!, device);
    for (const p of packs) await client.publishAsync(topic, p, { qos: 1 });
    await client.endAsync();
  }
}

beforeAll(async () => {
  nats = await startNats();
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-cluster-'));
  const shared = { store: `sqlite:${join(dir, 'shared.db')}`, bus: nats.url, storePollInterval: 20 };
  for (let i = 0; i < 3; i++) gws.push(await startGateway(shared));
  fleet = await provisionFleet(gws[0]!.gateway);
  device = await fleet.client('device', ['publish']);
  app = await fleet.client('app', ['subscribe']);
  // the other instances learn of the new clients from the store's change log
  await until(async () => (await http('POST', `${gws[2]!.http}/http/${fleet.topic}`, { headers: { authorization: `Client ${device.secret}`, 'content-type': 'application/senml+json' }, body: '[{"n":"warmup","v":1}]' })).status === 202);
}, 90_000);

afterAll(async () => {
  for (const close of closers) await close();
  for (const gw of gws) await gw.close();
  await nats?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('cluster over the NATS bus', () => {
  const protocolsIn = ['http', 'ws', 'mqtt'] as const;
  const protocolsOut = ['ws', 'mqtt'] as const;
  const cases = protocolsIn.flatMap((pin) => protocolsOut.map((pout) => [pin, pout] as const));

  it.each(cases)('%s publish on instance A reaches %s subscribers on A, B and C, each once and in order', async (pin, pout) => {
    const subs = await Promise.all(gws.map((gw) => subscriber(pout, gw, fleet.topic)));
    await wait(150); // the NATS subscriptions of B and C are in place
    const names = [1, 2, 3, 4, 5].map((i) => `${pin}-${pout}-${i}`);
    await publishOver(pin, gws[0]!, fleet.topic, names);
    for (const sub of subs) await until(() => sub.received.length >= names.length);
    await wait(200);
    for (const sub of subs) expect(sub.received.map((p) => JSON.parse(p)[0].n)).toEqual(names);
  });

  it('a subscriber of a channel on another instance receives nothing from a channel it does not subscribe to', async () => {
    const other = await gws[0]!.gateway.provisioning.createChannel(fleet.domain.id, { name: 'other' });
    await gws[0]!.gateway.provisioning.connect(fleet.domain.id, { client_ids: [device.id], channel_ids: [other.id], types: ['publish'] });
    const sub = await subscriber('ws', gws[1]!, fleet.topic);
    await wait(150);
    await until(async () => (await publish(gws[2]!.http, `/http/m/${fleet.domain.id}/c/${other.id}`, device.secret, '[{"n":"elsewhere","v":1}]')).status === 202);
    await publishOver('http', gws[2]!, fleet.topic, ['here']);
    await until(() => sub.received.length >= 1);
    await wait(200);
    expect(sub.received.map((p) => JSON.parse(p)[0].n)).toEqual(['here']);
  });

  it('counts bus traffic in /metrics and reports the bus in /health', async () => {
    const metrics = (await http('GET', `${gws[0]!.http}/metrics`)).text;
    expect(metrics).toMatch(/fleetgate_bus_messages_total\{direction="out"\} [1-9]/);
    const health = await http('GET', `${gws[1]!.http}/health/ready`);
    expect(health.status).toBe(200);
    expect(health.json.dependencies).toEqual({ bus: 'up' });
  });
});

describe('cluster when NATS fails', () => {
  it('keeps local fan-out, says degraded and not ready, counts drops, and resumes cross-instance delivery by itself', async () => {
    const [a, b] = [gws[0]!, gws[1]!];
    const local = await subscriber('ws', a, fleet.topic);
    const remote = await subscriber('ws', b, fleet.topic);
    await wait(150);
    await nats.kill();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 503, 15_000);
    const live = await http('GET', `${a.http}/health`);
    expect(live.status).toBe(200);
    expect(live.json).toMatchObject({ status: 'degraded', dependencies: { bus: 'down' } });

    await publishOver('http', a, fleet.topic, ['while-down']);
    await until(() => local.received.length === 1);
    expect((await http('GET', `${a.http}/metrics`)).text).toMatch(/fleetgate_bus_dropped_total [1-9]/);
    await wait(200);
    expect(remote.received).toHaveLength(0);

    await nats.restart();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 200 && (await http('GET', `${b.http}/health/ready`)).status === 200, 15_000);
    await wait(300);
    await publishOver('http', a, fleet.topic, ['after']);
    await until(() => remote.received.length === 1);
    expect(JSON.parse(remote.received[0]!)[0].n).toBe('after');
  }, 60_000);
});
