import type { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cluster/local-cluster.ts';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.ts';
import { until, wait } from '../helpers/until.ts';

/**
 * MQTT sessions across instances (FLEETGATE_MQTT_PERSISTENCE=redis://, as `npm run cluster` starts them): two instances
 * behind HAProxy share sessions, QoS 1 queues and retained messages in Redis and tell each other over NATS.
 */
let started: RedisCluster;
let cluster: LocalCluster;
let redis: Redis;
let topic: string;
let device: { id: string; secret: string };
let app: { id: string; secret: string };
let httpPublish: RedisCluster['httpPublish'];
const closers: (() => unknown)[] = [];

interface Received {
  readonly names: string[];
  readonly packets: { name: string; dup: boolean; retain: boolean; qos: number }[];
}

/** An MQTT client on one port (an instance's, or the balancer's) that records what it receives from the start. */
function connect(port: number, c: { id: string; secret: string }, options: IClientOptions = {}): Promise<{ client: MqttClient; sessionPresent: boolean; got: Received }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { username: c.id, password: c.secret, reconnectPeriod: 0, protocolVersion: 4, ...options });
    closers.push(() => client.end(true));
    const got: Received = { names: [], packets: [] };
    client.on('message', (_t, payload, packet) => {
      const name = payload.length === 0 ? '' : (JSON.parse(payload.toString()) as { n: string }[])[0]!.n;
      got.names.push(name);
      got.packets.push({ name, dup: packet.dup, retain: packet.retain, qos: packet.qos });
    });
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, got }));
    client.once('error', reject);
  });
}

const senml = (name: string): string => JSON.stringify([{ n: name, v: 1 }]);
const portOf = (n: number) => cluster.instances[n]!.mqtt;

async function metric(port: number, name: string): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${port}/metrics`)).body.text();
  return Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

/** Every message is received once; a second copy only with DUP set, as QoS 1 allows. */
function expectOnce(got: Received, names: string[]): void {
  expect([...new Set(got.names)].sort()).toEqual([...names].sort());
  const seen = new Set<string>();
  for (const p of got.packets) {
    if (seen.has(p.name)) expect(p.dup).toBe(true);
    seen.add(p.name);
  }
}

/** The QoS 1 messages still queued in Redis for a client id (aedes-persistence-redis's list). */
const queued = (clientId: string): Promise<number> => redis.llen(`outgoing:${encodeURIComponent(clientId)}`);

beforeAll(async () => {
  started = await startRedisCluster();
  ({ cluster, redis, device, app, topic, httpPublish } = started);
}, 120_000);

afterAll(async () => {
  for (const close of closers) await close();
  await started?.stop();
}, 60_000);

describe('MQTT sessions across instances (Redis)', () => {
  it.each([
    ['3.1.1 clean session false', { protocolVersion: 4, clean: false }, 'direct'],
    ['MQTT 5 session expiry', { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } }, 'balancer'],
  ] as const)('%s: subscribed on A, resumed on B (%s) with every queued QoS 1 message, once', async (_name, session, via) => {
    const clientId = `resume-${session.protocolVersion}`;
    const sub = `${topic}/resume${session.protocolVersion}`;
    const first = await connect(portOf(0), app, { ...session, clientId });
    await first.client.subscribeAsync(sub, { qos: 1 });
    await first.client.endAsync();
    await wait(300); // the subscription reaches the other instance's index over NATS

    const publisher = await connect(portOf(1), device, { clientId: `pub-${session.protocolVersion}` });
    const names = ['m1', 'm2', 'm3'];
    for (const n of names) await publisher.client.publishAsync(sub, senml(n), { qos: 1 });
    for (const n of ['h1', 'h2']) expect(await httpPublish(cluster.instances[0]!.http, sub, n)).toBe(202);
    names.push('h1', 'h2');
    await until(async () => (await queued(clientId)) === names.length, 10_000);

    // resumed elsewhere: on B directly, or wherever the balancer puts it
    const again = await connect(via === 'direct' ? portOf(1) : cluster.frontends.mqtt, app, { ...session, clientId });
    expect(again.sessionPresent).toBe(true);
    await until(() => new Set(again.got.names).size >= names.length, 10_000);
    expectOnce(again.got, names);
    await until(async () => (await queued(clientId)) === 0, 10_000);
    await again.client.endAsync();

    // nothing is delivered twice at the next reconnect (on A this time)
    const third = await connect(portOf(0), app, { ...session, clientId });
    expect(third.sessionPresent).toBe(true);
    await publisher.client.publishAsync(sub, senml('after'), { qos: 1 });
    await until(() => third.got.names.length > 0, 10_000);
    expect(third.got.names).toEqual(['after']);
    await third.client.endAsync();
  });

  it('an online persistent subscriber on B gets a QoS 1 message accepted on A once, and nothing stays queued for it', async () => {
    const clientId = 'online-b';
    const sub = `${topic}/online`;
    const online = await connect(portOf(1), app, { clean: false, clientId });
    await online.client.subscribeAsync(sub, { qos: 1 });
    await wait(300);
    const publisher = await connect(portOf(0), device, { clientId: 'pub-online' });
    await publisher.client.publishAsync(sub, senml('live-mqtt'), { qos: 1 });
    expect(await httpPublish(cluster.instances[0]!.http, sub, 'live-http')).toBe(202);
    await until(() => online.got.names.length >= 2, 10_000);
    await wait(300);
    expect([...online.got.names].sort()).toEqual(['live-http', 'live-mqtt']);
    await until(async () => (await queued(clientId)) === 0, 10_000);
    await online.client.endAsync();
    const back = await connect(portOf(1), app, { clean: false, clientId });
    await publisher.client.publishAsync(sub, senml('marker'), { qos: 1 });
    await until(() => back.got.names.length > 0, 10_000);
    expect(back.got.names).toEqual(['marker']);
  });

  it('a QoS 1 shared subscription member on B gets QoS 1 copies of QoS 1 messages accepted on A (MQTT and HTTP)', async () => {
    const sub = `${topic}/shared-qos`;
    const member = await connect(portOf(1), app, { protocolVersion: 5, clientId: 'shared-qos-b' });
    await member.client.subscribeAsync(`$share/qos/${sub}`, { qos: 1 });
    await wait(300); // the queue group reaches NATS
    const publisher = await connect(portOf(0), device, { clientId: 'pub-shared-qos' });
    await publisher.client.publishAsync(sub, senml('shared-mqtt'), { qos: 1 });
    expect(await httpPublish(cluster.instances[0]!.http, sub, 'shared-http')).toBe(202);
    await until(() => member.got.names.length >= 2, 10_000);
    expect(member.got.packets.map(({ name, qos }) => ({ name, qos })).sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: 'shared-http', qos: 1 }, { name: 'shared-mqtt', qos: 1 },
    ]);
  });

  it('every instance reports the stored sessions and the QoS 1 messages queued in Redis, whichever instance queued them', async () => {
    const clientId = 'metrics';
    const sub = `${topic}/metrics`;
    const first = await connect(portOf(0), app, { clean: false, clientId });
    await first.client.subscribeAsync(sub, { qos: 1 });
    await first.client.endAsync();
    for (const n of ['q1', 'q2', 'q3']) expect(await httpPublish(cluster.instances[0]!.http, sub, n)).toBe(202);
    await until(async () => (await queued(clientId)) === 3, 10_000);
    const inRedis = async (): Promise<number> => {
      let n = 0;
      for (const key of await redis.keys('outgoing:*')) n += await redis.llen(key);
      return n;
    };
    for (const instance of cluster.instances) {
      await until(async () => (await metric(instance.http, 'fleetgate_mqtt_queued_messages')) === (await inRedis()), 15_000);
      expect(await metric(instance.http, 'fleetgate_mqtt_queued_messages')).toBeGreaterThanOrEqual(3);
      expect(await metric(instance.http, 'fleetgate_mqtt_sessions{kind="persistent"}')).toBeGreaterThanOrEqual(1);
    }
    const again = await connect(portOf(1), app, { clean: false, clientId });
    await until(() => again.got.names.length >= 3, 10_000);
    await until(async () => (await metric(cluster.instances[1]!.http, 'fleetgate_mqtt_queued_messages')) === (await inRedis()), 15_000);
    await again.client.endAsync();
  });

  it('a retained message set through one instance reaches new subscribers on every instance; an empty one clears it everywhere', async () => {
    const sub = `${topic}/retained`;
    const publisher = await connect(portOf(0), device, { clientId: 'pub-retained' });
    await publisher.client.publishAsync(sub, senml('kept'), { qos: 1, retain: true });
    for (const n of [0, 1]) {
      const s = await connect(portOf(n), app, { clientId: `retained-${n}` });
      await s.client.subscribeAsync(sub, { qos: 1 });
      await until(() => s.got.names.length > 0, 10_000);
      expect(s.got.packets[0]).toMatchObject({ name: 'kept', retain: true });
      await s.client.endAsync();
    }
    const other = await connect(portOf(1), device, { clientId: 'pub-retained-b' });
    await other.client.publishAsync(sub, '', { qos: 1, retain: true });
    for (const n of [0, 1]) {
      const s = await connect(portOf(n), app, { clientId: `cleared-${n}` });
      await s.client.subscribeAsync(sub, { qos: 1 });
      await other.client.publishAsync(sub, senml(`marker-${n}`), { qos: 1 });
      await until(() => s.got.names.length > 0, 10_000);
      expect(s.got.names[0]).toBe(`marker-${n}`);
      await s.client.endAsync();
    }
  });

  it.each([
    ['MQTT 5 on A, again on B', 5, 0, 1],
    ['3.1.1 on B, again on A', 4, 1, 0],
  ] as const)('takes over a client id connected elsewhere (%s): the old connection is closed, counted', async (_name, version, from, to) => {
    const clientId = `takeover-${version}`;
    const before = await metric(cluster.instances[from]!.http, 'fleetgate_mqtt_takeovers_total');
    const old = await connect(portOf(from), app, { protocolVersion: version, clientId });
    const reasons: number[] = [];
    old.client.on('disconnect', (packet) => reasons.push(packet.reasonCode ?? -1));
    let closed = false;
    old.client.on('close', () => (closed = true));
    const fresh = await connect(portOf(to), app, { protocolVersion: version, clientId });
    await until(() => closed, 10_000);
    if (version === 5) expect(reasons).toEqual([0x8e]);
    expect(fresh.client.connected).toBe(true);
    await until(async () => (await metric(cluster.instances[from]!.http, 'fleetgate_mqtt_takeovers_total')) === before + 1, 10_000);
    await fresh.client.endAsync();
  });

  it('takes over through the balancer, wherever each connection lands', async () => {
    const clientId = 'takeover-balanced';
    const old = await connect(cluster.frontends.mqtt, app, { protocolVersion: 5, clientId });
    const reasons: number[] = [];
    old.client.on('disconnect', (packet) => reasons.push(packet.reasonCode ?? -1));
    await connect(cluster.frontends.mqtt, app, { protocolVersion: 5, clientId });
    await until(() => reasons.length > 0, 10_000);
    expect(reasons).toEqual([0x8e]);
  });

  it('Redis down: CONNECT is refused as server unavailable, /health/ready answers 503; back when Redis is', async () => {
    const live = await connect(portOf(0), app, { clientId: 'survivor' });
    // a persistent subscriber on B: what A accepts for it while Redis is down cannot be queued, and still reaches it
    const onB = await connect(portOf(1), app, { clean: false, clientId: 'survivor-b' });
    await onB.client.subscribeAsync(`${topic}/down`, { qos: 1 });
    await wait(300);
    await cluster.services.redis.kill();
    try {
      for (const instance of cluster.instances) {
        await until(async () => (await request(`http://127.0.0.1:${instance.http}/health/ready`)).statusCode === 503, 10_000);
        const health = await (await request(`http://127.0.0.1:${instance.http}/health`)).body.json() as { dependencies: Record<string, string> };
        expect(health.dependencies.mqtt_sessions).toBe('down');
      }
      await expect(connect(portOf(0), app, { clientId: 'refused-4' })).rejects.toMatchObject({ code: 3 });
      await expect(connect(portOf(1), app, { clientId: 'refused-5', protocolVersion: 5 })).rejects.toMatchObject({ code: 0x88 });
      // HTTP publishing goes on; connected clients stay connected
      expect(await httpPublish(cluster.instances[0]!.http, `${topic}/down`, 'still')).toBe(202);
      await until(() => onB.got.names.includes('still'), 10_000);
      expect(live.client.connected && onB.client.connected).toBe(true);
    } finally {
      await cluster.services.redis.restart();
    }
    for (const instance of cluster.instances) {
      await until(async () => (await request(`http://127.0.0.1:${instance.http}/health/ready`)).statusCode === 200, 15_000);
    }
    const back = await connect(portOf(1), app, { clientId: 'after-redis' });
    expect(back.client.connected).toBe(true);
  });
});
