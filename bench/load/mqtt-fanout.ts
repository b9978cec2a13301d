import mqtt, { type MqttClient } from 'mqtt';
import { parseArgs } from 'node:util';

/**
 * MQTT fan-out load, run as its own process by bench/scenarios/mqtt-fanout.ts: P publishers send as fast as their
 * sockets take it, Q subscribers (or Q members of one shared subscription group) count deliveries and measure latency
 * from a send timestamp in the payload. With `--clean false` every client has a persistent session (clean session 0),
 * discarded when the run ends.
 * Prints one JSON line: {delivered, seconds, rate, p50, p99} (latency in ms).
 */
const { values: a } = parseArgs({
  options: {
    url: { type: 'string' }, username: { type: 'string', default: '' }, password: { type: 'string', default: '' },
    topic: { type: 'string' }, publishers: { type: 'string', default: '10' }, subscribers: { type: 'string', default: '10' },
    qos: { type: 'string', default: '0' }, seconds: { type: 'string', default: '5' }, size: { type: 'string', default: '100' },
    // `false`: every client has a persistent session (clean session 0), whose QoS 1 deliveries the broker stores
    clean: { type: 'string', default: 'true' },
    // the subscribers are the members of this shared subscription group ($share/<share>/<topic>) instead
    share: { type: 'string', default: '' },
  },
});
const qos = Number(a.qos) as 0 | 1;
const seconds = Number(a.seconds);
// --clean false: persistent sessions, wiped at the end (else later rounds would queue messages for these)
const clean = a.clean !== 'false';

function connect(id: string, cleanSession = clean): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(a.url!, { protocolVersion: 4, reconnectPeriod: 0, clientId: id, clean: cleanSession, username: a.username || undefined, password: a.password || undefined });
    c.once('connect', () => {
      // MQTT.js leaves Nagle on: 40 ms stalls at these rates (DESIGN.md §12).
      (c.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      resolve(c);
    });
    c.once('error', reject);
  });
}

const tag = Math.random().toString(36).slice(2, 8);
const subs = await Promise.all(Array.from({ length: Number(a.subscribers) }, (_, i) => connect(`sub-${tag}-${i}`)));
const filter = a.share ? `$share/${a.share}/${a.topic}` : a.topic!;
await Promise.all(subs.map((s) => new Promise((resolve) => s.subscribe(filter, { qos }, resolve))));
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
// A clean CONNECT with the same id discards a persistent session and what is queued for it [MQTT-3.1.2-6].
if (!clean) for (const c of await Promise.all([...pubs, ...subs].map((c) => connect(c.options.clientId!, true)))) c.end(true);
process.exit(0);
