import type { MqttClient } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { http, publish } from '../helpers/clients.ts';
import { clusterForFile, type TestCluster } from '../helpers/cluster.ts';
import type { TestClient, TestGateway } from '../helpers/gateway.ts';
import { until, wait } from '../helpers/until.ts';

/**
 * MQTT shared subscriptions across three instances on one NATS bus: whichever instance accepts a message, over
 * whichever protocol, exactly one member of the group gets it, wherever the members are connected.
 */
let cluster: TestCluster;
let gws: TestGateway[];
let fleet: TestCluster['fleet'];
let device: TestClient;
let app: TestClient;

/** A member of `$share/<group>/<topic>` on an instance; records the names it receives. */
async function member(gw: TestGateway, group: string, topic: string, protocolVersion: 4 | 5 = 5): Promise<{ client: MqttClient; got: string[] }> {
  const client = await cluster.mqttConnect(gw, app, { protocolVersion });
  const got: string[] = [];
  client.on('message', (t, payload) => {
    expect(t).toBe(topic);
    got.push(JSON.parse(payload.toString())[0].n);
  });
  await client.subscribeAsync(`$share/${group}/${topic}`, { qos: 1 });
  return { client, got };
}

const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);

/** Publishes the names through `gw`, a third each over HTTP, MQTT and WebSocket. */
async function publishThrough(gw: TestGateway, topic: string, all: string[]): Promise<void> {
  const third = Math.ceil(all.length / 3);
  await cluster.publishOver('http', gw, topic, all.slice(0, third));
  await cluster.publishOver('mqtt', gw, topic, all.slice(third, 2 * third));
  await cluster.publishOver('ws', gw, topic, all.slice(2 * third));
}

clusterForFile(3, (started) => {
  cluster = started;
  ({ gws, fleet, device, app } = cluster);
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
    const plain = await cluster.mqttConnect(gws[2]!, app, { protocolVersion: 5 });
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
    await cluster.nats.kill();
    await until(async () => (await http('GET', `${a.http}/health/ready`)).status === 503, 15_000);
    const down = ['down-1', 'down-2', 'down-3'];
    for (const n of down) expect((await publish(a.http, `/http/${topic}`, device.secret, pack(n))).status).toBe(202);
    await until(() => atA.got.length === down.length);
    expect(atB.got).toEqual([]);

    await cluster.nats.restart();
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
