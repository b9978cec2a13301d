import { join } from 'node:path';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { openFilesLimit, residentKiB, startFleetgate, startMosquitto, startReferenceWs, type Fleetgate, type Server } from '../lib/servers.ts';
import { summarize, type Summary } from '../lib/stats.ts';
import { startGenerator } from '../load/spawn.ts';

interface Opened {
  readonly connected: number;
  readonly failed: number;
  readonly firstError: string;
  readonly seconds: number;
}

export type IdleResult = AbResult & {
  heapPerConnectionKiB: number;
  targetKiB: number;
  /** fleetgate's resident memory per connection with a full GC before and after, young generation left out */
  settled: Summary;
  /** settled.median / the reference's median */
  settledRatio: number;
  /** fleetgate's live JS heap per connection (heap used after a full GC) */
  liveHeapPerConnectionKiB: number;
};

const kTargetKiB = { ws: 10, mqtt: 25 } as const;
const kSettleMs = 2000;
const kMaxGcRuns = 6;
const kGcPreload = join(import.meta.dirname, '../lib/gc-on-signal.mjs');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The gateway's heap figures from /metrics, KiB: JS heap used, and the young generation's committed size. */
async function heapKiB(port: number): Promise<{ used: number; young: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const read = (re: RegExp) => Number(re.exec(text)![1]) / 1024;
  return { used: read(/^fleetgate_nodejs_heap_size_used_bytes (\S+)/m), young: read(/^fleetgate_nodejs_heap_space_size_total_bytes\{space="new"\} (\S+)/m) };
}

/**
 * Runs full garbage collections in the gateway (bench/lib/gc-on-signal.mjs) and reads what is left. V8 gives freed
 * pages back in the background and over more than one collection: they run, a second apart, until one gives back less
 * than 256 KiB (at most 6).
 */
async function collected(gateway: Fleetgate): Promise<{ rss: number; used: number; young: number }> {
  let rss = residentKiB(gateway.pid);
  for (let i = 0; i < kMaxGcRuns; i++) {
    process.kill(gateway.pid, 'SIGUSR2');
    await sleep(1000);
    const now = residentKiB(gateway.pid);
    const freed = rss - now;
    rss = now;
    if (i > 0 && freed < 256) break;
  }
  return { rss, ...(await heapKiB(gateway.port)) };
}

/**
 * Resident memory per idle connection: `n` WebSocket subscribers on fleetgate's raw channel vs a bare uWS app (every
 * socket subscribed to one topic), or `n` MQTT clients (demo client's secret, keepalive 60 s, one QoS 0 subscription)
 * vs mosquitto, held by a generator process (bench/load/idle.ts) on raw sockets. Each round starts fresh servers: a
 * process that has already served floods (the shared bench gateway) reuses freed heap, and its RSS delta would say
 * little. A warm-up of 200 connections comes first so code compiled on first use is not counted. Needs `ulimit -n`
 * above n in the bench (the servers inherit it; the generator raises its own).
 *
 * Two figures for fleetgate, each from its own fresh gateway per round:
 * - the ratio's: VmRSS 2 s after the connections minus before, over n, as an outsider measures it. It counts the
 *   handshakes' garbage that V8 has not collected yet (it does later, on its own), so it moves with GC timing.
 * - settled: the same with full GCs before and after (the gateway preloads bench/lib/gc-on-signal.mjs), minus the
 *   young generation's change (V8 sizes it by allocation rate, not by connections); and the live JS heap per
 *   connection. This is what the connections themselves hold.
 * Ratios fleetgate / reference: lower is better.
 */
export async function idleConnections(protocol: 'ws' | 'mqtt', n: number, o: LoadOptions, progress: (line: string) => void): Promise<IdleResult> {
  const label = `idle-${protocol}-${n}`;
  const kib = { fleetgate: [] as number[], reference: [] as number[], settled: [] as number[] };
  const heap: number[] = [];
  const live: number[] = [];
  const loop: number[] = [];
  let errors = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const name of ['reference', 'fleetgate', 'settled'] as const) {
      const gateway = name === 'reference' ? undefined : await startFleetgate(name === 'settled' ? { NODE_OPTIONS: `--import ${kGcPreload}` } : {});
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
        const before = gateway && name === 'settled' ? await collected(gateway) : { rss: residentKiB(server.pid), ...(gateway && (await heapKiB(gateway.port))) };
        await gateway?.eventLoopP99();
        const held = startGenerator('idle.ts', { ...args, count: n });
        const opened = await held.next<Opened>();
        const count = Math.max(opened.connected, 1);
        await sleep(kSettleMs);
        let line: string;
        if (name === 'settled') {
          const after = await collected(gateway!);
          const perConnection = (after.rss - before.rss - (after.young - before.young!)) / count;
          const livePer = (after.used - before.used!) / count;
          kib.settled.push(perConnection);
          live.push(livePer);
          line = `${perConnection.toFixed(1)} KiB each after full GCs (young generation ${((after.young - before.young!) / 1024).toFixed(0)} MiB apart, left out), live JS heap ${livePer.toFixed(1)} KiB`;
        } else {
          const perConnection = (residentKiB(server.pid) - before.rss) / count;
          kib[name].push(perConnection);
          line = `${perConnection.toFixed(1)} KiB each`;
          if (gateway) {
            const heapPer = ((await heapKiB(gateway.port)).used - before.used!) / count;
            heap.push(heapPer);
            loop.push(await gateway.eventLoopP99());
            line += `, of it JS heap ${heapPer.toFixed(1)} KiB`;
          }
        }
        errors += opened.failed;
        progress(`${label} round ${round}/${o.rounds} ${name.padEnd(9)} ${opened.connected} connections in ${opened.seconds.toFixed(1)} s: ${line}${opened.failed ? ` (${opened.failed} failed: ${opened.firstError})` : ''}`);
        await held.finish();
      } finally {
        await server.stop();
      }
    }
  }
  const fleetgate = summarize(kib.fleetgate);
  const reference = summarize(kib.reference);
  const settled = summarize(kib.settled);
  const heapPerConnectionKiB = summarize(heap).median;
  const liveHeapPerConnectionKiB = summarize(live).median;
  const target = kTargetKiB[protocol];
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors, eventLoopP99: summarize(loop), unit: 'KiB/connection', better: 'lower',
    heapPerConnectionKiB, targetKiB: target, settled, settledRatio: settled.median / reference.median, liveHeapPerConnectionKiB,
    note: `${n} ${protocol === 'ws' ? 'WebSocket subscribers' : 'MQTT clients, one subscription each'}; fleetgate JS heap ${heapPerConnectionKiB.toFixed(1)} KiB of it; `
      + `settled (full GCs): ${settled.median.toFixed(1)} KiB ±${(settled.spread * 100).toFixed(0)}%, ratio ${(settled.median / reference.median).toFixed(2)}, live JS heap ${liveHeapPerConnectionKiB.toFixed(1)} KiB; `
      + `target ≤ ${target} KiB: ${fleetgate.median <= target ? 'met' : 'missed'}`,
  };
}
