import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { openFilesLimit, residentKiB, startFleetgate, startMosquitto, startReferenceWs, type Server } from '../lib/servers.ts';
import { summarize } from '../lib/stats.ts';
import { startGenerator } from '../load/spawn.ts';

interface Opened {
  readonly connected: number;
  readonly failed: number;
  readonly firstError: string;
  readonly seconds: number;
}

export type IdleResult = AbResult & { heapPerConnectionKiB: number; targetKiB: number };

const kTargetKiB = { ws: 10, mqtt: 25 } as const;
const kSettleMs = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Resident memory per idle connection: `n` WebSocket subscribers on fleetgate's raw channel vs a bare uWS app (every
 * socket subscribed to one topic), or `n` MQTT clients (demo client's secret, keepalive 60 s, one QoS 0 subscription)
 * vs mosquitto, held by a generator process (bench/load/idle.ts). Memory is VmRSS after the connections minus before,
 * divided by n, taken once the server has been quiet for 2 s. Every round starts fresh servers: a process that has
 * already served floods (the shared bench gateway) reuses freed heap, and its RSS delta would say little. A warm-up of
 * 200 connections comes first so code compiled on first use is not counted. Ratio fleetgate / reference: lower is
 * better. Needs `ulimit -n` above n in the bench (the servers inherit it; the generator raises its own).
 */
export async function idleConnections(protocol: 'ws' | 'mqtt', n: number, o: LoadOptions, progress: (line: string) => void): Promise<IdleResult> {
  const label = `idle-${protocol}-${n}`;
  const kib = { fleetgate: [] as number[], reference: [] as number[] };
  const heap: number[] = [];
  const loop: number[] = [];
  let errors = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const name of ['reference', 'fleetgate'] as const) {
      const gateway = name === 'fleetgate' ? await startFleetgate() : undefined;
      const server: Server = gateway ?? (protocol === 'ws' ? await startReferenceWs() : await startMosquitto());
      try {
        const limit = openFilesLimit(server.pid);
        if (limit < n + 256) throw new Error(`${label}: the servers may open ${limit} files, ${n} connections need more: raise \`ulimit -n\` before the bench`);
        const args: Record<string, string | number> = gateway === undefined
          ? { protocol, port: server.port, path: '/idle', topic: 'bench/idle' }
          : protocol === 'ws'
            ? { protocol, port: gateway.port, path: `/ws/${gateway.rawTopic}?authorization=${encodeURIComponent(gateway.secret)}` }
            : { protocol, port: gateway.mqttPort, topic: gateway.rawTopic, username: gateway.clientId, password: gateway.secret };
        const warm = startGenerator('idle.ts', { ...args, count: 200 });
        await warm.next();
        await warm.finish();
        await sleep(kSettleMs);
        const before = residentKiB(server.pid);
        const heapBefore = gateway && (await heapUsedKiB(gateway.port));
        await gateway?.eventLoopP99();
        const held = startGenerator('idle.ts', { ...args, count: n });
        const opened = await held.next<Opened>();
        await sleep(kSettleMs);
        const perConnection = (residentKiB(server.pid) - before) / Math.max(opened.connected, 1);
        kib[name].push(perConnection);
        errors += opened.failed;
        let extra = '';
        if (gateway) {
          const heapPer = ((await heapUsedKiB(gateway.port)) - heapBefore!) / Math.max(opened.connected, 1);
          heap.push(heapPer);
          loop.push(await gateway.eventLoopP99());
          extra = `, of it JS heap ${heapPer.toFixed(1)} KiB`;
        }
        progress(`${label} round ${round}/${o.rounds} ${name.padEnd(9)} ${opened.connected} connections in ${opened.seconds.toFixed(1)} s: ${perConnection.toFixed(1)} KiB each${extra}${opened.failed ? ` (${opened.failed} failed: ${opened.firstError})` : ''}`);
        await held.finish();
      } finally {
        await server.stop();
      }
    }
  }
  const fleetgate = summarize(kib.fleetgate);
  const reference = summarize(kib.reference);
  const heapPerConnectionKiB = summarize(heap).median;
  const target = kTargetKiB[protocol];
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors, eventLoopP99: summarize(loop), unit: 'KiB/connection', better: 'lower',
    heapPerConnectionKiB, targetKiB: target,
    note: `${n} ${protocol === 'ws' ? 'WebSocket subscribers' : 'MQTT clients, one subscription each'}; fleetgate JS heap ${heapPerConnectionKiB.toFixed(1)} KiB of it; target ≤ ${target} KiB: ${fleetgate.median <= target ? 'met' : 'missed'}`,
  };
}

async function heapUsedKiB(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(/^fleetgate_nodejs_heap_size_used_bytes (\S+)/m.exec(text)![1]) / 1024;
}

