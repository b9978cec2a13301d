import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { startLocalCluster } from '../../src/cluster/local-cluster.ts';
import { openPostgresStore } from '../../src/registry/postgres-store.ts';
import { Provisioning } from '../../src/registry/service.ts';
import { RegistryView } from '../../src/registry/view.ts';
import { provisionFleet } from './gateway.ts';
import { until } from './until.ts';

export type RedisCluster = Awaited<ReturnType<typeof startRedisCluster>>;

/**
 * Two instances sharing MQTT sessions in Redis (FLEETGATE_MQTT_PERSISTENCE=redis://, as `npm run cluster` starts them)
 * behind HAProxy, with `env` added to theirs; a publishing device and a subscribing app both instances know; a client
 * of that Redis; `stop` ends it all.
 */
export async function startRedisCluster(env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-mqtt-sessions-'));
  chmodSync(dir, 0o755); // PostgreSQL runs as its own user under root
  const cluster = await startLocalCluster({ dir, instances: 2, http: 0, mqtt: 0, env: { ...process.env, FLEETGATE_LOG_LEVEL: 'warn', ...env }, durable: false });
  const redis = new Redis(cluster.redis);
  redis.on('error', () => {}); // Redis may be killed on purpose
  const store = openPostgresStore(cluster.store);
  const view = new RegistryView(store);
  await view.load();
  const fleet = await provisionFleet({ provisioning: new Provisioning(store, view) });
  const device = await fleet.client('device', ['publish']);
  const app = await fleet.client('app', ['subscribe']);

  /** Publishes a SenML pack named `name` as the device over an instance's HTTP port; its status. */
  const httpPublish = async (port: number, path: string, name: string): Promise<number> => {
    const res = await request(`http://127.0.0.1:${port}/http/${path}`, {
      method: 'POST', headers: { authorization: `Client ${device.secret}`, 'content-type': 'application/senml+json' }, body: JSON.stringify([{ n: name, v: 1 }]),
    });
    await res.body.text();
    return res.statusCode;
  };
  // both instances know the device
  for (const instance of cluster.instances) await until(async () => (await httpPublish(instance.http, `${fleet.topic}/warmup`, 'w')) === 202, 10_000);

  return {
    cluster, redis, device, app, topic: fleet.topic, httpPublish,
    async stop(): Promise<void> {
      redis.disconnect();
      await store.close();
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
