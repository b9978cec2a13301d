import type { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cluster/local-cluster.ts';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.ts';
import { until } from '../helpers/until.ts';

/**
 * Persistent sessions kept in Redis expire (FLEETGATE_MQTT_SESSION_EXPIRY_MAX, here 2 s, and MQTT 5 Session Expiry)
 * whichever instance the client left, and also when that instance died.
 */
let started: RedisCluster;
let cluster: LocalCluster;
let redis: Redis;
let topic: string;
let app: { id: string; secret: string };
let httpPublish: RedisCluster['httpPublish'];
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

beforeAll(async () => {
  started = await startRedisCluster({ FLEETGATE_MQTT_SESSION_EXPIRY_MAX: '2' });
  ({ cluster, redis, app, topic, httpPublish } = started);
}, 120_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  await started?.stop();
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
