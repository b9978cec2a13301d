import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { coresUsed, mqttConnectPacket, mqttOpen } from './wire.ts';

/**
 * MQTT connection storm, run as its own process by bench/scenarios/storm.ts: `count` clients connect (MQTT 3.1.1,
 * password = the next token of `tokens`, one per line) with at most `concurrency` handshakes in flight, and stay
 * connected until all are answered. CONNACK latency runs from the TCP connect to the CONNACK. Prints
 * {"measuring":true} as the storm begins, then {ok, refused, failed, firstError, rate, p50, p99, cpu} (latency in ms;
 * rate: accepted connections per second; cpu: this process, in cores).
 */
const { values: a } = parseArgs({
  options: {
    port: { type: 'string' }, count: { type: 'string', default: '5000' }, concurrency: { type: 'string', default: '1000' },
    tokens: { type: 'string' }, prefix: { type: 'string', default: 'storm' },
  },
});
const port = Number(a.port);
const count = Number(a.count);
const tokens = readFileSync(a.tokens!, 'utf8').split('\n').filter(Boolean);
if (tokens.length < count) throw new Error(`${count} clients need as many tokens, got ${tokens.length}`);
// Encoded before the clock starts: the storm measures the server, not the encoder.
const packets = Array.from({ length: count }, (_, i) => mqttConnectPacket({ clientId: `${a.prefix}-${i}`, username: 'bench', password: tokens[i]!, keepalive: 60 }));

const sockets: Socket[] = [];
const latencies: number[] = [];
let refused = 0;
let failed = 0;
let firstError = '';
let next = 0;

async function client(): Promise<void> {
  while (next < count) {
    const packet = packets[next++]!;
    const t0 = performance.now();
    try {
      const { socket, returnCode } = await mqttOpen(port, packet);
      sockets.push(socket);
      socket.on('error', () => {});
      if (returnCode === 0) latencies.push(performance.now() - t0);
      else {
        refused++;
        firstError ||= `CONNACK return code ${returnCode}`;
      }
    } catch (err) {
      failed++;
      firstError ||= (err as Error).message;
    }
  }
}

process.stdout.write('{"measuring":true}\n');
const cpu0 = process.cpuUsage();
const started = performance.now();
await Promise.all(Array.from({ length: Math.min(Number(a.concurrency), count) }, client));
const seconds = (performance.now() - started) / 1000;
latencies.sort((x, y) => x - y);
const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
process.stdout.write(JSON.stringify({ ok: latencies.length, refused, failed, firstError, seconds, rate: latencies.length / seconds, p50: pct(0.5), p99: pct(0.99), cpu: coresUsed(cpu0, seconds) }) + '\n');
for (const s of sockets) s.destroy();
process.exit(0);
