import mqtt, { type MqttClient } from 'mqtt';
import { parseArgs } from 'node:util';

/**
 * MQTT fan-out load, run as its own process by bench/scenarios/mqtt-fanout.ts: P publishers send as fast as their
 * sockets take it, Q subscribers count deliveries and measure latency from a send timestamp in the payload.
 * Prints one JSON line: {delivered, seconds, rate, p50, p99} (latency in ms).
 */
const { values: a } = parseArgs({
  options: {
    url: { type: 'string' }, username: { type: 'string', default: '' }, password: { type: 'string', default: '' },
    topic: { type: 'string' }, publishers: { type: 'string', default: '10' }, subscribers: { type: 'string', default: '10' },
    qos: { type: 'string', default: '0' }, seconds: { type: 'string', default: '5' }, size: { type: 'string', default: '100' },
    // `false`: subscribers with persistent sessions (clean session 0), whose QoS 1 deliveries the broker stores
    clean: { type: 'string', default: 'true' },
  },
});
const qos = Number(a.qos) as 0 | 1;
const seconds = Number(a.seconds);

function connect(id: string, clean = true): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(a.url!, { protocolVersion: 4, reconnectPeriod: 0, clientId: id, clean, username: a.username || undefined, password: a.password || undefined });
    c.once('connect', () => {
      // MQTT.js leaves Nagle on: 40 ms stalls at these rates (DESIGN.md §12).
      (c.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      resolve(c);
    });
    c.once('error', reject);
  });
}

const tag = Math.random().toString(36).slice(2, 8);
const subs = await Promise.all(Array.from({ length: Number(a.subscribers) }, (_, i) => connect(`sub-${tag}-${i}`, a.clean !== 'false')));
await Promise.all(subs.map((s) => new Promise((resolve) => s.subscribe(a.topic!, { qos }, resolve))));
const pubs = await Promise.all(Array.from({ length: Number(a.publishers) }, (_, i) => connect(`pub-${tag}-${i}`)));

let delivered = 0;
let measuring = false;
const latencies: number[] = [];
for (const s of subs) {
  s.on('message', (_t, payload: Buffer) => {
    if (!measuring) return;
    delivered++;
    // Every 16th delivery is sampled for latency: enough points, little cost.
    if ((delivered & 15) === 0) latencies.push(Number(process.hrtime.bigint() - payload.readBigUInt64BE(0)) / 1e6);
  });
}

const base = Buffer.alloc(Number(a.size), 0x61);
let running = true;
const publishLoop = async (p: MqttClient) => {
  const stream = p.stream as unknown as { writableLength: number; once(e: string, f: () => void): void };
  while (running) {
    for (let i = 0; i < 50; i++) {
      const payload = Buffer.from(base);
      payload.writeBigUInt64BE(process.hrtime.bigint(), 0);
      p.publish(a.topic!, payload, { qos });
    }
    // Flow control: wait while the socket is behind, then yield to the event loop.
    if (stream.writableLength > 256 * 1024) await new Promise<void>((resolve) => stream.once('drain', resolve));
    else await new Promise((resolve) => setImmediate(resolve));
  }
};
const loops = pubs.map(publishLoop);
await new Promise((r) => setTimeout(r, 1000)); // warm-up, not counted
measuring = true;
const started = performance.now();
await new Promise((r) => setTimeout(r, seconds * 1000));
measuring = false;
const elapsed = (performance.now() - started) / 1000;
running = false;
await Promise.all(loops);
latencies.sort((x, y) => x - y);
const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
process.stdout.write(JSON.stringify({ delivered, seconds: elapsed, rate: delivered / elapsed, p50: pct(0.5), p99: pct(0.99) }) + '\n');
for (const c of [...pubs, ...subs]) c.end(true);
process.exit(0);
