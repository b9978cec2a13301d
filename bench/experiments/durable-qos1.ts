import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../../src/cluster/ports.ts';

/**
 * Issue 15: the cost of durable MQTT state under a QoS 1 flood. The built gateway (dist/main.js) with
 * FLEETGATE_MQTT_PERSISTENCE=memory and =sqlite, alternating per round; P publishers flood Q subscribers with
 * persistent sessions (clean session 0) at QoS 1 (bench/load/mqtt-fanout.ts --clean false), so every delivery is
 * queued, updated and cleared in the persistence. Prints deliveries/s, latency and the gateway's event-loop delay p99
 * (its /metrics) per round. Run by hand: node --import tsx bench/experiments/durable-qos1.ts [--rounds 3 --duration 5]
 */
const { values } = parseArgs({ options: { only: { type: 'string', default: 'memory,sqlite' }, rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '5' }, publishers: { type: 'string', default: '10' }, subscribers: { type: 'string', default: '10' } } });
const main = resolve('dist/main.js');
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-durable-'));
const env = { ...process.env, FLEETGATE_STORE: `sqlite:${join(dir, 'fleetgate.db')}`, FLEETGATE_HOST: '127.0.0.1', FLEETGATE_LOG_LEVEL: 'warn', FLEETGATE_AUDIT_LOG: 'off', FLEETGATE_MQTT_MAX_QUEUED: '0' };
const provision = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [main, 'provision', ...args], { env }).toString());
const domain = provision('domain', 'create', '--name', 'bench');
const channel = provision('channel', 'create', '--domain', domain.id, '--name', 'flood', '--format', 'raw');
const client = provision('client', 'create', '--domain', domain.id, '--name', 'load', '--secret', 'bench-load-secret-0123');
provision('connect', '--domain', domain.id, '--client', client.id, '--channel', channel.id);

let rounds = 0;
async function round(persistence: string): Promise<string> {
  // a new file per round: the persistent sessions of the last round would still be queued for
  const setting = persistence === 'sqlite' ? `sqlite:${join(dir, `mqtt-${rounds++}.db`)}` : persistence;
  const [http, mqtt] = [await freePort(), await freePort()];
  const gateway = spawn(process.execPath, [...(process.env.GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean), main, 'serve'], { env: { ...env, FLEETGATE_HTTP_PORT: String(http), FLEETGATE_MQTT_PORT: String(mqtt), FLEETGATE_MQTT_PERSISTENCE: setting }, stdio: 'inherit' });
  process.once('SIGTERM', () => {
    gateway.kill('SIGKILL');
    process.exit(1);
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${http}/health`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await fetch(`http://127.0.0.1:${http}/metrics`); // resets the event-loop window
  const load = execFileSync(process.execPath, ['--import', 'tsx', 'bench/load/mqtt-fanout.ts', '--url', `mqtt://127.0.0.1:${mqtt}`, '--topic', `m/${domain.id}/c/${channel.id}`,
    '--username', client.id, '--password', 'bench-load-secret-0123', '--publishers', values.publishers!, '--subscribers', values.subscribers!, '--qos', '1', '--clean', 'false', '--seconds', values.duration!], { timeout: 60_000 }).toString();
  const metrics = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
  const loop = Number(/^fleetgate_event_loop_delay_p99_seconds (\S+)/m.exec(metrics)?.[1]) * 1000;
  gateway.kill('SIGTERM');
  await new Promise((r) => gateway.once('exit', r));
  const { rate, p50, p99 } = JSON.parse(load);
  return `${persistence.padEnd(7)} ${Math.round(rate)} deliveries/s  latency p50 ${p50.toFixed(1)} ms p99 ${p99.toFixed(1)} ms  event loop p99 ${loop.toFixed(1)} ms`;
}

try {
  for (let r = 0; r < Number(values.rounds); r++) for (const persistence of values.only!.split(',')) console.log(await round(persistence));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
