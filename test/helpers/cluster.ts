import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, expect } from 'vitest';
import { publish, WsClient } from './clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from './gateway.ts';
import { startNats } from './servers.ts';
import { until, wait } from './until.ts';

export type TestCluster = Awaited<ReturnType<typeof startCluster>>;

/** For a test file: a cluster started before its tests (handed to `started`) and closed after them. */
export function clusterForFile(instances: number, started: (cluster: TestCluster) => void): void {
  let cluster: TestCluster | undefined;
  beforeAll(async () => started((cluster = await startCluster(instances))), 90_000);
  afterAll(async () => {
    await cluster?.close();
  });
}

/**
 * `instances` gateways on one real nats-server and one SQLite store, with the usual fleet (a publishing device, a
 * subscribing app) known to every instance; `close` ends the clients it made, the gateways, and the server.
 */
export async function startCluster(instances: number) {
  const nats = await startNats();
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-cluster-'));
  const shared = { store: `sqlite:${join(dir, 'shared.db')}`, bus: nats.url, storePollInterval: 20 };
  const gws: TestGateway[] = [];
  for (let i = 0; i < instances; i++) gws.push(await startGateway(shared));
  const fleet = await provisionFleet(gws[0]!.gateway);
  const device = await fleet.client('device', ['publish']);
  const app = await fleet.client('app', ['subscribe']);
  // the other instances learn of the new clients from the store's change log
  for (const gw of gws) await until(async () => (await publish(gw.http, `/http/${fleet.topic}`, device.secret, '[{"n":"warmup","v":1}]')).status === 202);
  const closers: (() => unknown)[] = [];

  /** An MQTT.js client of `c` on an instance (MQTT 3.1.1 unless told), ended with the cluster. */
  const mqttConnect = (gw: TestGateway, c: TestClient, options: mqtt.IClientOptions = {}): Promise<MqttClient> => new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, { username: c.id, password: c.secret, reconnectPeriod: 0, protocolVersion: 4, ...options });
    closers.push(() => client.end(true));
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });

  /** Publishes a SenML pack named after each of `names` through an instance, as the device, over one protocol. */
  const publishOver = async (kind: 'http' | 'ws' | 'mqtt', gw: TestGateway, topic: string, names: string[]): Promise<void> => {
    const packs = names.map((n) => JSON.stringify([{ n, v: 1 }]));
    if (kind === 'http') {
      for (const p of packs) expect((await publish(gw.http, `/http/${topic}`, device.secret, p)).status).toBe(202);
    } else if (kind === 'ws') {
      const ws = await WsClient.connect(`${gw.ws}/ws/${topic}`, { authorization: `Client ${device.secret}` });
      for (const p of packs) ws.send(p);
      await wait(100);
      ws.close();
    } else {
      const client = await mqttConnect(gw, device);
      for (const p of packs) await client.publishAsync(topic, p, { qos: 1 });
      await client.endAsync();
    }
  };

  return {
    nats, gws, fleet, device, app, mqttConnect, publishOver,
    /** `close` is run before the gateways close */
    onClose: (close: () => unknown) => closers.push(close),
    async close() {
      for (const close of closers) await close();
      for (const gw of gws) await gw.close();
      await nats.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
