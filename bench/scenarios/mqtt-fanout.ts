import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import type { Fleetgate, Server } from '../lib/servers.ts';
import { fmt, summarize } from '../lib/stats.ts';

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

/**
 * MQTT fan-out: P publishers × Q subscribers of one topic, 100-byte payloads, at QoS 0 or 1, against fleetgate (a raw
 * channel: no payload work, like the reference) and Debian's mosquitto, from the same generator process, alternating
 * rounds. Deliveries per second, and latency (publisher send -> subscriber receive) p50/p99. With `share`, the Q
 * subscribers are one shared subscription group: each message is delivered once, so deliveries/s = messages/s.
 */
export async function mqttFanout(shape: MqttShape, gateway: Fleetgate, mosquitto: Server, o: LoadOptions, progress: (line: string) => void): Promise<AbResult & { latency: { fleetgate: number; reference: number } }> {
  const label = `mqtt-${shape.share ? 'shared' : 'fanout'}-${shape.publishers}x${shape.subscribers}-qos${shape.qos}`;
  const common = { publishers: shape.publishers, subscribers: shape.subscribers, qos: shape.qos, seconds: o.duration, size: 100, ...(shape.share && { share: shape.share }) };
  const targets = [
    { name: 'reference' as const, args: { ...common, url: `mqtt://127.0.0.1:${mosquitto.port}`, topic: 'bench/fanout' } },
    { name: 'fleetgate' as const, args: { ...common, url: `mqtt://127.0.0.1:${gateway.mqttPort}`, topic: gateway.rawTopic, username: gateway.clientId, password: gateway.secret } },
  ];
  const rates: Record<string, number[]> = { fleetgate: [], reference: [] };
  const p99: Record<string, number[]> = { fleetgate: [], reference: [] };
  const loop: number[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    for (const t of targets) {
      if (t.name === 'fleetgate') await gateway.eventLoopP99();
      const r = await generate(t.args);
      if (t.name === 'fleetgate') loop.push(await gateway.eventLoopP99());
      rates[t.name]!.push(r.rate);
      p99[t.name]!.push(r.p99);
      progress(`${label} round ${round}/${o.rounds} ${t.name.padEnd(9)} ${fmt(r.rate)} deliveries/s, latency p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms`);
    }
  }
  const fleetgate = summarize(rates.fleetgate!);
  const reference = summarize(rates.reference!);
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors: 0, eventLoopP99: summarize(loop),
    latency: { fleetgate: summarize(p99.fleetgate!).median, reference: summarize(p99.reference!).median },
  };
}
