import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publish, run } from '../helpers/clients.ts';
import { freePort, provisionFleet, startGateway, type TestClient } from '../helpers/gateway.ts';
import { startRedis, type ServerProcess } from '../helpers/servers.ts';
import { until } from '../helpers/until.ts';

/** The Redis MQTT persistence on one instance: aedes-persistence's own abstract suite, a restart, a start without Redis. */
let redis: ServerProcess;
let dir: string;
beforeAll(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-redis-mqtt-'));
}, 30_000);
afterAll(async () => {
  await redis?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function connect(port: number, c: TestClient, options: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean; names: string[] }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { username: c.id, password: c.secret, reconnectPeriod: 0, ...options });
    const names: string[] = [];
    client.on('message', (_t, payload) => names.push((JSON.parse(payload.toString()) as { n: string }[])[0]!.n));
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, names }));
    client.once('error', reject);
  });
}

describe('Redis MQTT persistence', () => {
  it('passes aedes-persistence\'s abstract suite', async () => {
    const suite = fileURLToPath(new URL('../fixtures/redis-persistence-abstract.ts', import.meta.url));
    const { code, stdout, stderr } = await run(process.execPath, ['--import', 'tsx', '--test-reporter=tap', suite], {
      env: { ...process.env, FLEETGATE_TEST_REDIS: redis.url },
    });
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)`, 'm').exec(stdout)?.[1]);
    expect({ code, fail: count('fail'), stderr: code === 0 ? '' : stderr + stdout.slice(-4000) }).toEqual({ code: 0, fail: 0, stderr: '' });
    expect(count('pass')).toBeGreaterThanOrEqual(48);
  }, 300_000);

  it('keeps a persistent session and its queued QoS 1 messages (HTTP ones too) across a restart of the gateway', async () => {
    const settings = { store: `sqlite:${join(dir, 'restart.db')}`, mqttPersistence: redis.url };
    const first = await startGateway(settings);
    const fleet = await provisionFleet(first.gateway);
    const device = await fleet.client('device', ['publish']);
    const app = await fleet.client('app', ['subscribe']);
    const session = { clientId: 'sleeper', clean: false, protocolVersion: 4 } as const;
    const sub = await connect(first.gateway.mqttPort!, app, session);
    await sub.client.subscribeAsync(fleet.topic, { qos: 1 });
    await sub.client.endAsync();
    for (const n of ['a', 'b']) expect((await publish(first.http, `/http/${fleet.topic}`, device.secret, [{ n, v: 1 }])).status).toBe(202);
    await first.close();

    const second = await startGateway(settings);
    try {
      const back = await connect(second.gateway.mqttPort!, app, session);
      expect(back.sessionPresent).toBe(true);
      await until(() => back.names.length >= 2, 10_000);
      expect([...new Set(back.names)]).toEqual(['a', 'b']);
      await back.client.endAsync();
    } finally {
      await second.close();
    }
  }, 60_000);

  it('a start that cannot reach Redis stops at once with a config error naming the setting, without its password', async () => {
    const url = `redis://:hunter2@127.0.0.1:${await freePort()}`;
    const child = spawn(process.execPath, [fileURLToPath(new URL('../../dist/main.js', import.meta.url)), 'serve'], {
      env: { ...process.env, FLEETGATE_STORE: `sqlite:${join(dir, 'down.db')}`, FLEETGATE_HTTP_PORT: '0', FLEETGATE_MQTT_PORT: '0', FLEETGATE_HOST: '127.0.0.1', FLEETGATE_MQTT_PERSISTENCE: url },
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(output).toContain('FG_ERR_CONFIG_INVALID');
    expect(output).toContain('FLEETGATE_MQTT_PERSISTENCE: Redis at 127.0.0.1:');
    expect(output).not.toContain('hunter2');
  }, 30_000);
});
