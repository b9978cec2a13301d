import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { kSettings } from '../../src/config.ts';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { startFleetgate, startMosquitto, type Fleetgate, type Server } from '../lib/servers.ts';
import { fmt, summarize, type Summary } from '../lib/stats.ts';

interface LoadResult {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
}

export interface MqttShape {
  readonly publishers: number;
  readonly subscribers: number;
  readonly qos: 0 | 1;
  /** the subscribers are the members of this shared subscription group (`$share/<share>/<topic>`) */
  readonly share?: string;
}

function generate(args: Record<string, string | number>): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../load/mqtt-fanout.ts'),
    ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load generator exited ${code}`)))));
}

/** One broker under load: the generator's arguments for it, and the gateway when it is one (its event-loop p99). */
interface Side {
  readonly name: string;
  readonly args: Record<string, string | number>;
  readonly gateway?: Fleetgate;
}

interface SideResult {
  readonly rate: Summary;
  readonly p50: Summary;
  readonly p99: Summary;
  readonly loop: number[];
}

/** Loads each side in turn, round after round (noise on the shared machine hits all alike). */
async function alternate(label: string, sides: readonly Side[], o: LoadOptions, progress: (line: string) => void): Promise<Record<string, SideResult>> {
  const raw = Object.fromEntries(sides.map((s) => [s.name, { rate: [] as number[], p50: [] as number[], p99: [] as number[], loop: [] as number[] }]));
  const width = Math.max(9, ...sides.map((s) => s.name.length));
  for (let round = 1; round <= o.rounds; round++) {
    for (const side of sides) {
      await side.gateway?.eventLoopP99();
      const r = await generate(side.args);
      const mine = raw[side.name]!;
      if (side.gateway) mine.loop.push(await side.gateway.eventLoopP99());
      mine.rate.push(r.rate);
      mine.p50.push(r.p50);
      mine.p99.push(r.p99);
      progress(`${label} round ${round}/${o.rounds} ${side.name.padEnd(width)} ${fmt(r.rate)} deliveries/s, latency p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms`);
    }
  }
  return Object.fromEntries(Object.entries(raw).map(([name, r]) => [name, { rate: summarize(r.rate), p50: summarize(r.p50), p99: summarize(r.p99), loop: r.loop }]));
}

const fleetgateArgs = (gateway: Fleetgate) => ({ url: `mqtt://127.0.0.1:${gateway.mqttPort}`, topic: gateway.rawTopic, username: gateway.clientId, password: gateway.secret });
const mosquittoArgs = (mosquitto: Server) => ({ url: `mqtt://127.0.0.1:${mosquitto.port}`, topic: 'bench/fanout' });

/**
 * MQTT fan-out: P publishers × Q subscribers of one topic, 100-byte payloads, at QoS 0 or 1, against fleetgate (a raw
 * channel: no payload work, like the reference) and Debian's mosquitto, from the same generator process, alternating
 * rounds. Deliveries per second, and latency (publisher send -> subscriber receive) p50/p99. With `share`, the Q
 * subscribers are one shared subscription group: each message is delivered once, so deliveries/s = messages/s.
 */
export async function mqttFanout(shape: MqttShape, gateway: Fleetgate, mosquitto: Server, o: LoadOptions, progress: (line: string) => void): Promise<AbResult & { latency: { fleetgate: number; reference: number } }> {
  const label = `mqtt-${shape.share ? 'shared' : 'fanout'}-${shape.publishers}x${shape.subscribers}-qos${shape.qos}`;
  const common = { publishers: shape.publishers, subscribers: shape.subscribers, qos: shape.qos, seconds: o.duration, size: 100, ...(shape.share && { share: shape.share }) };
  const r = await alternate(label, [
    { name: 'reference', args: { ...common, ...mosquittoArgs(mosquitto) } },
    { name: 'fleetgate', args: { ...common, ...fleetgateArgs(gateway) }, gateway },
  ], o, progress);
  const fleetgate = r.fleetgate!;
  const reference = r.reference!;
  return {
    fleetgate: fleetgate.rate, reference: reference.rate, ratio: fleetgate.rate.median / reference.rate.median, errors: 0, eventLoopP99: summarize(fleetgate.loop),
    latency: { fleetgate: fleetgate.p99.median, reference: reference.p99.median },
  };
}

// Set by the MQTT persistence work (issue 15); a build without it keeps MQTT state in memory whatever the variable says.
const kPersistenceEnv = 'FLEETGATE_MQTT_PERSISTENCE';
const hasPersistenceSetting = () => Object.values(kSettings).some((s): boolean => (s.env as string) === kPersistenceEnv);

export type DurableResult = AbResult & {
  latency: { fleetgate: number; reference: number };
  /** fleetgate with FLEETGATE_MQTT_PERSISTENCE=memory, in the same rounds */
  memory: Summary;
  /** sqlite / memory: what durability costs fleetgate */
  sqliteToMemory: number;
  memoryToReference: number;
  /** latency p50 and p99 medians, ms, per side */
  latencyMs: Record<'sqlite' | 'memory' | 'mosquitto', { p50: number; p99: number }>;
  /** false: this build has no FLEETGATE_MQTT_PERSISTENCE, both gateways kept MQTT state in memory */
  persistenceSetting: boolean;
};

/**
 * Durable MQTT fan-out: 10 QoS 1 publishers × 10 QoS 1 subscribers, every client with a persistent session (clean
 * session 0), against three brokers started for it: fleetgate with FLEETGATE_MQTT_PERSISTENCE=sqlite (the
 * `fleetgate` side), fleetgate with `memory`, and mosquitto with `persistence true` (the reference), alternating
 * rounds. The ratio is sqlite / mosquitto; sqlite / memory is what durability costs fleetgate.
 */
export async function mqttFanoutDurable(o: LoadOptions, progress: (line: string) => void): Promise<DurableResult> {
  const label = 'mqtt-fanout-10x10-qos1-durable';
  const common = { publishers: 10, subscribers: 10, qos: 1, seconds: o.duration, size: 100, clean: 'false' };
  const servers: { stop(): Promise<void> }[] = [];
  try {
    const mosquitto = await startMosquitto({ persistent: true });
    servers.push(mosquitto);
    const sqlite = await startFleetgate({ [kPersistenceEnv]: 'sqlite' });
    servers.push(sqlite);
    const memory = await startFleetgate({ [kPersistenceEnv]: 'memory' });
    servers.push(memory);
    const r = await alternate(label, [
      { name: 'mosquitto', args: { ...common, ...mosquittoArgs(mosquitto) } },
      { name: 'fleetgate-sqlite', args: { ...common, ...fleetgateArgs(sqlite) }, gateway: sqlite },
      { name: 'fleetgate-memory', args: { ...common, ...fleetgateArgs(memory) }, gateway: memory },
    ], o, progress);
    const [s, m, q] = [r['fleetgate-sqlite']!, r['fleetgate-memory']!, r.mosquitto!];
    const persistenceSetting = hasPersistenceSetting();
    const sqliteToMemory = s.rate.median / m.rate.median;
    const memoryToReference = m.rate.median / q.rate.median;
    return {
      fleetgate: s.rate, reference: q.rate, ratio: s.rate.median / q.rate.median, errors: 0, eventLoopP99: summarize(s.loop), unit: 'deliveries/s',
      latency: { fleetgate: s.p99.median, reference: q.p99.median },
      memory: m.rate, sqliteToMemory, memoryToReference, persistenceSetting,
      latencyMs: { sqlite: { p50: s.p50.median, p99: s.p99.median }, memory: { p50: m.p50.median, p99: m.p99.median }, mosquitto: { p50: q.p50.median, p99: q.p99.median } },
      note: `fleetgate sqlite vs mosquitto persistence true; fleetgate memory ${fmt(m.rate.median)} deliveries/s ±${(m.rate.spread * 100).toFixed(0)}%: `
        + `sqlite / memory ${sqliteToMemory.toFixed(2)}, memory / mosquitto ${memoryToReference.toFixed(2)}; `
        + `latency p50 sqlite / memory / mosquitto ${s.p50.median.toFixed(1)} / ${m.p50.median.toFixed(1)} / ${q.p50.median.toFixed(1)} ms; event-loop p99 memory ${summarize(m.loop).median.toFixed(1)} ms`
        + (persistenceSetting ? '' : `; this build has no ${kPersistenceEnv}: both gateways kept MQTT state in memory`),
    };
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
}
