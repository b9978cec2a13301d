import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { cpuSeconds, type Fleetgate, type Server } from '../lib/servers.ts';
import { fmt, summarize } from '../lib/stats.ts';
import { runMeasured } from '../load/spawn.ts';

interface FanoutLoad {
  readonly delivered: number;
  readonly rate: number;
  /** the generator's CPU, in cores */
  readonly cpu: number;
}

export type WsFanoutResult = AbResult & { cpuPerDeliveryUs: { fleetgate: number; reference: number }; generatorCores: { fleetgate: number; reference: number } };

/**
 * WebSocket fan-out 1 → N: one WebSocket publisher and N subscribers on fleetgate's raw channel (no payload work) and
 * on a bare uWS app that re-publishes every frame with app.publish (bench/reference-ws.ts), 100-byte messages, from
 * one generator process (bench/load/ws-fanout.ts) per round, alternating. Deliveries per second at the subscribers,
 * and each server's CPU time per delivery (from /proc): the generator shares the two cores, so the rate is the
 * machine's, the CPU per delivery the server's own. The reference's rate is bounded by the generator (one core, busy):
 * its real margin over fleetgate is wider than the ratio says.
 */
export async function wsFanout(subscribers: number, gateway: Fleetgate, reference: Server, o: LoadOptions, progress: (line: string) => void): Promise<WsFanoutResult> {
  const label = `ws-fanout-1x${subscribers}`;
  const common = { subscribers, seconds: o.duration, size: 100, window: 64 };
  const targets = [
    { name: 'reference' as const, cpu: () => cpuSeconds(reference.pid), args: { ...common, port: reference.port, path: '/fanout' } },
    { name: 'fleetgate' as const, cpu: gateway.cpuSeconds, args: { ...common, port: gateway.port, path: `/ws/${gateway.rawTopic}?authorization=${encodeURIComponent(gateway.secret)}` } },
  ];
  const rates = { fleetgate: [] as number[], reference: [] as number[] };
  const cpuUs = { fleetgate: [] as number[], reference: [] as number[] };
  const cores = { fleetgate: [] as number[], reference: [] as number[] };
  const loop: number[] = [];
  for (const t of targets) await runMeasured('ws-fanout.ts', { ...t.args, seconds: 1 }, t.cpu); // warm-up
  for (let round = 1; round <= o.rounds; round++) {
    for (const t of targets) {
      if (t.name === 'fleetgate') await gateway.eventLoopP99();
      const r = await runMeasured<FanoutLoad>('ws-fanout.ts', t.args, t.cpu);
      if (t.name === 'fleetgate') loop.push(await gateway.eventLoopP99());
      const us = (r.serverCpu / Math.max(r.delivered, 1)) * 1e6;
      rates[t.name].push(r.rate);
      cpuUs[t.name].push(us);
      cores[t.name].push(r.cpu);
      progress(`${label} round ${round}/${o.rounds} ${t.name.padEnd(9)} ${fmt(r.rate)} deliveries/s, server ${us.toFixed(2)} µs CPU each, generator ${(r.cpu * 100).toFixed(0)}% CPU`);
    }
  }
  const median = (v: number[]) => summarize(v).median;
  const fleetgate = summarize(rates.fleetgate);
  const referenceRate = summarize(rates.reference);
  const cpuPerDeliveryUs = { fleetgate: median(cpuUs.fleetgate), reference: median(cpuUs.reference) };
  const generatorCores = { fleetgate: median(cores.fleetgate), reference: median(cores.reference) };
  return {
    fleetgate, reference: referenceRate, ratio: fleetgate.median / referenceRate.median, errors: 0, eventLoopP99: summarize(loop),
    unit: 'deliveries/s', publishers: 1, subscribers, cpuPerDeliveryUs, generatorCores,
    note: `server CPU per delivery ${cpuPerDeliveryUs.fleetgate.toFixed(2)} / ${cpuPerDeliveryUs.reference.toFixed(2)} µs (ratio ${(cpuPerDeliveryUs.reference / cpuPerDeliveryUs.fleetgate).toFixed(2)}); generator ${(generatorCores.fleetgate * 100).toFixed(0)}% / ${(generatorCores.reference * 100).toFixed(0)}% CPU`,
  };
}
