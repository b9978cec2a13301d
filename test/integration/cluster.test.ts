import { describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { clusterForFile, type TestCluster } from '../helpers/cluster.ts';
import type { TestClient, TestGateway } from '../helpers/gateway.ts';
import { until, wait } from '../helpers/until.ts';

/**
 * Three instances on one NATS bus and one store: a message accepted by any instance, over any protocol, reaches the
 * subscribers of every instance, over every protocol, once, in publish order.
 */
let cluster: TestCluster;
let gws: TestGateway[];
let fleet: TestCluster['fleet'];
let device: TestClient;
let app: TestClient;

/** A subscriber on one instance over WebSocket or MQTT that collects what arrives. */
async function subscriber(kind: 'ws' | 'mqtt', gw: TestGateway, topic: string): Promise<{ received: string[] }> {
  const received: string[] = [];
  if (kind === 'ws') {
    const ws = await WsClient.connect(`${gw.ws}/ws/${topic}`, { authorization: `Client ${app.secret}` });
    cluster.onClose(() => ws.close());
    ws.socket.on('message', (data: Buffer) => received.push(data.toString()));
  } else {
    const client = await cluster.mqttConnect(gw, app);
    await client.subscribeAsync(topic, { qos: 0 });
    client.on('message', (_t, payload) => received.push(payload.toString()));
  }
  return { received };
}

const publishOver: TestCluster['publishOver'] = (...args) => cluster.publishOver(...args);

clusterForFile(3, (started) => {
  cluster = started;
  ({ gws, fleet, device, app } = cluster);
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
    await cluster.nats.kill();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 503, 15_000);
    const live = await http('GET', `${a.http}/health`);
    expect(live.status).toBe(200);
    expect(live.json).toMatchObject({ status: 'degraded', dependencies: { bus: 'down' } });

    await publishOver('http', a, fleet.topic, ['while-down']);
    await until(() => local.received.length === 1);
    expect((await http('GET', `${a.http}/metrics`)).text).toMatch(/fleetgate_bus_dropped_total [1-9]/);
    await wait(200);
    expect(remote.received).toHaveLength(0);

    await cluster.nats.restart();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 200 && (await http('GET', `${b.http}/health/ready`)).status === 200, 15_000);
    await wait(300);
    await publishOver('http', a, fleet.topic, ['after']);
    await until(() => remote.received.length === 1);
    expect(JSON.parse(remote.received[0]!)[0].n).toBe('after');
  }, 60_000);
});
