import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalCluster, type LocalCluster } from '../../src/cluster/local-cluster.ts';
import { openPostgresStore } from '../../src/registry/postgres-store.ts';
import { Provisioning } from '../../src/registry/service.ts';
import type { Store } from '../../src/registry/store.ts';
import { RegistryView } from '../../src/registry/view.ts';
import { provisionFleet } from '../helpers/gateway.ts';
import { until } from '../helpers/until.ts';

/**
 * Persistent sessions kept in Redis expire (FLEETGATE_MQTT_SESSION_EXPIRY_MAX, here 2 s, and MQTT 5 Session Expiry)
 * whichever instance the client left, and also when that instance died.
 */
let dir: string;
let cluster: LocalCluster;
let store: Store;
let redis: Redis;
let topic: string;
let app: { id: string; secret: string };
let device: { id: string; secret: string };
const clients: MqttClient[] = [];

function connect(port: number, options: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { username: app.id, password: app.secret, reconnectPeriod: 0, protocolVersion: 4, ...options });
    clients.push(client);
    client.on('error', () => {}); // the instance is killed on purpose below
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }));
    client.once('error', reject);
  });
}

const portOf = (n: number) => cluster.instances[n]!.mqtt;
/** the client's session as aedes-persistence-redis stores it: its subscriptions */
const stored = async (clientId: string): Promise<boolean> => (await redis.exists(`client:${encodeURIComponent(clientId)}`)) === 1;

async function httpPublish(port: number, path: string, name: string): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}/http/${path}`, {
    method: 'POST', headers: { authorization: `Client ${device.secret}`, 'content-type': 'application/senml+json' }, body: JSON.stringify([{ n: name, v: 1 }]),
  });
  await res.body.text();
  return res.statusCode;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-mqtt-expiry-'));
  chmodSync(dir, 0o755); // PostgreSQL runs as its own user under root
  const env = { ...process.env, FLEETGATE_LOG_LEVEL: 'warn', FLEETGATE_MQTT_SESSION_EXPIRY_MAX: '2' };
  cluster = await startLocalCluster({ dir, instances: 2, http: 0, mqtt: 0, env, durable: false });
  redis = new Redis(cluster.redis);
  store = openPostgresStore(cluster.store);
  const view = new RegistryView(store);
  await view.load();
  const fleet = await provisionFleet({ provisioning: new Provisioning(store, view) });
  device = await fleet.client('device', ['publish']);
  app = await fleet.client('app', ['subscribe']);
  topic = fleet.topic;
  for (const instance of cluster.instances) await until(async () => (await httpPublish(instance.http, `${topic}/warmup`, 'w')) === 202, 10_000);
}, 120_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  redis?.disconnect();
  await store?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('persistent sessions in Redis expire', () => {
  it('a 3.1.1 session left on A expires after FLEETGATE_MQTT_SESSION_EXPIRY_MAX, with its queue; B then starts a new one', async () => {
    const clientId = 'expiry-311';
    const first = await connect(portOf(0), { clean: false, clientId });
    await first.client.subscribeAsync(`${topic}/expiry`, { qos: 1 });
    expect(await stored(clientId)).toBe(true);
    await first.client.endAsync();
    expect(await httpPublish(cluster.instances[0]!.http, `${topic}/expiry`, 'queued')).toBe(202);
    await until(async () => (await redis.llen(`outgoing:${clientId}`)) === 1, 10_000);
    await until(async () => !(await stored(clientId)) && (await redis.llen(`outgoing:${clientId}`)) === 0, 15_000);
    const again = await connect(portOf(1), { clean: false, clientId });
    expect(again.sessionPresent).toBe(false);
  });

  it('an MQTT 5 session whose instance died expires all the same: another instance ends it', async () => {
    const clientId = 'expiry-5-killed';
    const first = await connect(portOf(0), { protocolVersion: 5, clean: false, clientId, properties: { sessionExpiryInterval: 1 } });
    await first.client.subscribeAsync(`${topic}/killed`, { qos: 1 });
    await until(() => stored(clientId), 10_000);
    await cluster.instances[0]!.kill();
    // B notices A is gone (its alive key lapses), then the session's second of expiry passes
    await until(async () => !(await stored(clientId)), 30_000);
    const again = await connect(portOf(1), { protocolVersion: 5, clean: false, clientId, properties: { sessionExpiryInterval: 60 } });
    expect(again.sessionPresent).toBe(false);
  }, 40_000);
});
