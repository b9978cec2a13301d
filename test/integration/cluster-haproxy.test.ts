import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kComposeFrontends, kComposeInstances } from '../../src/cluster/compose.ts';
import { haproxyConfig } from '../../src/cluster/haproxy.ts';
import { startLocalCluster, type LocalCluster } from '../../src/cluster/local-cluster.ts';
import { openPostgresStore } from '../../src/registry/postgres-store.ts';
import { Provisioning } from '../../src/registry/service.ts';
import type { Store } from '../../src/registry/store.ts';
import { RegistryView } from '../../src/registry/view.ts';
import { WsClient } from '../helpers/clients.ts';
import { until, wait } from '../helpers/until.ts';

/**
 * The whole cluster as `npm run cluster` starts it: three instances behind HAProxy. Devices and applications talk to
 * the balancer only; it places them on different instances; one instance dies and the rest carry on.
 */
let dir: string;
let cluster: LocalCluster;
let store: Store;
let topic: string;
let device: { id: string; secret: string };
let app: { id: string; secret: string };
const closers: (() => unknown)[] = [];
/** Each publish on a new connection, so that HAProxy places each one afresh. */
const fresh = new Agent({ pipelining: 0, keepAliveTimeout: 1 });
async function httpPublish(name: string, subtopic = ''): Promise<number> {
  try {
    const res = await request(`http://127.0.0.1:${cluster.frontends.http}/http/${topic}${subtopic}`, {
      method: 'POST', dispatcher: fresh, headers: { authorization: `Client ${device.secret}`, 'content-type': 'application/senml+json', connection: 'close' },
      body: JSON.stringify([{ n: name, v: 1 }]),
    });
    await res.body.text();
    return res.statusCode;
  } catch {
    return 0;
  }
}

function mqttThroughBalancer(c: { id: string; secret: string }, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${cluster.frontends.mqtt}`, { username: c.id, password: c.secret, reconnectPeriod: 0, protocolVersion: 4, ...options });
    closers.push(() => client.end(true));
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

/** How many open connections an instance has (of one protocol, or all), from its /metrics. */
async function connectionsOn(port: number, protocol = '[^"]+'): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${port}/metrics`)).body.text();
  return [...text.matchAll(new RegExp(`^fleetgate_connections\\{[^}]*protocol="${protocol}"[^}]*\\} (\\d+)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-haproxy-'));
  chmodSync(dir, 0o755); // PostgreSQL runs as its own user under root
  cluster = await startLocalCluster({ dir, instances: 3, http: 0, mqtt: 0, env: { ...process.env, FLEETGATE_LOG_LEVEL: 'warn' }, durable: false });
  store = openPostgresStore(cluster.store);
  const view = new RegistryView(store);
  await view.load();
  const p = new Provisioning(store, view);
  const domain = await p.createDomain({ name: 'fleet' });
  const channel = await p.createChannel(domain.id, { name: 'telemetry' });
  const made = async (name: string, types: ('publish' | 'subscribe')[]) => {
    const { client, secret } = await p.createClient(domain.id, { name });
    await p.connect(domain.id, { client_ids: [client.id], channel_ids: [channel.id], types });
    return { id: client.id, secret };
  };
  device = await made('device', ['publish']);
  app = await made('app', ['subscribe']);
  topic = `m/${domain.id}/c/${channel.id}`;
  // every instance knows the device (on a subtopic no test subscribes to)
  await until(async () => (await httpPublish('warmup', '/warmup')) === 202, 10_000);
}, 120_000);

afterAll(async () => {
  for (const close of closers) await close();
  await store?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('cluster behind HAProxy (npm run cluster)', () => {
  it('writes the same HAProxy configuration as deploy/haproxy.cfg, for its own loopback ports', () => {
    const local = readFileSync(join(dir, 'haproxy.cfg'), 'utf8');
    const shape = (cfg: string) => cfg.replace(/\S+:\d+/g, 'ADDR').replace(/port \d+/g, 'port N');
    expect(shape(local)).toBe(shape(haproxyConfig({ http: kComposeFrontends.http, mqtt: kComposeFrontends.mqtt }, kComposeInstances)));
  });

  it('spreads subscribers over the instances, and an HTTP publish through the balancer reaches all of them on WS and MQTT', async () => {
    const received: string[][] = [];
    for (let i = 0; i < 3; i++) {
      const ws = await WsClient.connect(`ws://127.0.0.1:${cluster.frontends.http}/ws/${topic}`, { authorization: `Client ${app.secret}` });
      closers.push(() => ws.close());
      const got: string[] = [];
      ws.socket.on('message', (d: Buffer) => got.push(JSON.parse(d.toString())[0].n));
      received.push(got);
      const client = await mqttThroughBalancer(app, { clientId: `app-${i}` });
      await client.subscribeAsync(topic);
      const gotMqtt: string[] = [];
      client.on('message', (_t, payload) => gotMqtt.push(JSON.parse(payload.toString())[0].n));
      received.push(gotMqtt);
    }
    // leastconn put the six long-lived connections on every instance
    for (const instance of cluster.instances) expect(await connectionsOn(instance.http)).toBeGreaterThan(0);
    await wait(200);
    const names = ['a', 'b', 'c', 'd', 'e'];
    for (const n of names) expect(await httpPublish(n)).toBe(202);
    await until(() => received.every((r) => r.length >= names.length), 10_000);
    await wait(200);
    // Each publish came on a new connection, so the balancer may have put consecutive ones on different instances:
    // every subscriber gets each once, but order holds only among messages one instance accepted (docs/CLUSTER.md).
    for (const r of received) expect([...r].sort()).toEqual(names);
  });

  it('keeps working when an instance is killed: its clients reconnect through the balancer, nothing sent to a survivor is lost', async () => {
    // an MQTT publisher through the balancer that reconnects by itself (as devices do); the instance it lands on dies
    const before = await Promise.all(cluster.instances.map((i) => connectionsOn(i.http, 'mqtt')));
    const publisher = await mqttThroughBalancer(device, { clientId: 'device-1', reconnectPeriod: 100 });
    const now = await Promise.all(cluster.instances.map((i) => connectionsOn(i.http, 'mqtt')));
    const doomed = cluster.instances[now.findIndex((n, i) => n > before[i]!)]!;
    const survivors = cluster.instances.filter((i) => i !== doomed);
    // a subscriber on each survivor, connected directly so we know where it is
    const subs = await Promise.all(survivors.map(async (s) => {
      const ws = await WsClient.connect(`ws://127.0.0.1:${s.http}/ws/${topic}`, { authorization: `Client ${app.secret}` });
      closers.push(() => ws.close());
      const got = new Set<string>();
      ws.socket.on('message', (d: Buffer) => got.add(JSON.parse(d.toString())[0].n));
      return got;
    }));
    let reconnected = 0;
    publisher.on('connect', () => reconnected++);
    await wait(200);
    const accepted: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        if ((await httpPublish(`http-${i}`)) === 202) accepted.push(`http-${i}`);
        if (publisher.connected) {
          const name = `mqtt-${i}`;
          await publisher.publishAsync(topic, JSON.stringify([{ n: name, v: 1 }]), { qos: 1 }).then(() => accepted.push(name), () => {});
        }
        await wait(10);
      }
    })();
    await wait(500);
    await doomed.kill();
    const killedAt = accepted.length;
    await wait(3_000);
    stop = true;
    await load;
    // load went on after the kill, over HTTP and MQTT (the publisher reconnected to a survivor)
    expect(reconnected).toBeGreaterThan(0);
    const after = accepted.slice(killedAt);
    expect(after.filter((n) => n.startsWith('http-')).length).toBeGreaterThan(10);
    expect(after.filter((n) => n.startsWith('mqtt-')).length).toBeGreaterThan(10);
    await until(async () => subs.every((got) => after.every((n) => got.has(n))), 5_000).catch(() => {});
    for (const got of subs) expect(after.filter((n) => !got.has(n))).toEqual([]);
  }, 60_000);
});
