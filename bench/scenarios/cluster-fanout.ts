import autocannon from 'autocannon';
import { freePort } from '../../src/cluster/ports.ts';
import { startNats } from '../../src/cluster/servers.ts';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { pidOf } from '../lib/cluster.ts';
import { cpuSeconds, startFleetgate, type Fleetgate } from '../lib/servers.ts';
import { fmt, summarize, type Summary } from '../lib/stats.ts';
import { startGenerator, type Generator } from '../load/spawn.ts';
import { kSenmlBody } from './http-publish.ts';

interface Counted {
  readonly rate: number;
  readonly closed: number;
}

export type ClusterFanoutResult = AbResult & {
  deliveries: { fleetgate: Summary; reference: Summary };
  /** gateway CPU per HTTP publish (its fan-out included), µs, median of the rounds */
  cpuPerRequestUs: { fleetgate: number; reference: number };
  /** nats-server's CPU while the NATS side ran, in cores (median) */
  natsCores: number;
};

/**
 * cluster-fanout: what the NATS bus costs one instance. Two fresh gateways side by side, one with
 * FLEETGATE_BUS=nats://… (a nats-server from Debian's package, on a free loopback port) and one with the `local` bus,
 * each with `perProtocol` WebSocket and as many MQTT subscribers on its raw channel (bench/load/subscribers.ts), take
 * the same HTTP publish load (autocannon), alternating rounds. On the NATS side every message is also encoded into the
 * msgpack envelope and handed to nats.js (src/bus/nats.ts); nats-server receives it and, as no other instance wants
 * the channel (noEcho), drops it. Ratio: the NATS side's publish rate over the local side's. Deliveries per second,
 * gateway CPU per publish (from /proc) and nats-server's CPU are reported beside it.
 */
export async function clusterFanout(o: LoadOptions, progress: (line: string) => void, perProtocol = 10): Promise<ClusterFanoutResult> {
  const label = 'cluster-fanout';
  const nats = await startNats(await freePort());
  const natsPid = pidOf((cmd) => cmd[0]!.endsWith('nats-server') && cmd.includes(String(nats.port)));
  const stops: (() => Promise<void>)[] = [() => nats.stop()];
  try {
    const sides: { name: 'fleetgate' | 'reference'; gateway: Fleetgate; subscribers: Generator }[] = [];
    for (const [name, env] of [['reference', {}], ['fleetgate', { FLEETGATE_BUS: `nats://127.0.0.1:${nats.port}` }]] as const) {
      const gateway = await startFleetgate(env);
      stops.unshift(gateway.stop);
      const subscribers = startGenerator('subscribers.ts', {
        port: gateway.port, path: `/ws/${gateway.rawTopic}?authorization=${encodeURIComponent(gateway.secret)}`,
        'mqtt-port': gateway.mqttPort, topic: gateway.rawTopic, username: gateway.clientId, password: gateway.secret, ws: perProtocol, mqtt: perProtocol,
      });
      stops.unshift(() => subscribers.finish());
      await subscribers.next();
      sides.push({ name, gateway, subscribers });
    }
    const publish = async (g: Fleetgate, seconds: number) => {
      const r = await autocannon({
        url: `http://127.0.0.1:${g.port}/http/${g.rawTopic}`, method: 'POST', headers: { authorization: `Client ${g.secret}` }, body: kSenmlBody,
        duration: seconds, connections: o.connections, pipelining: o.pipelining,
      });
      return { rps: r.requests.average, requests: r.requests.total, bad: r.non2xx + r.errors + r.timeouts };
    };
    const rates = { fleetgate: [] as number[], reference: [] as number[] };
    const deliveries = { fleetgate: [] as number[], reference: [] as number[] };
    const cpuUs = { fleetgate: [] as number[], reference: [] as number[] };
    const natsCores: number[] = [];
    const loop = { fleetgate: [] as number[], reference: [] as number[] };
    let errors = 0;
    let closed = 0;
    for (const s of sides) await publish(s.gateway, 1); // warm-up
    for (let round = 1; round <= o.rounds; round++) {
      for (const s of sides) {
        await s.gateway.eventLoopP99();
        const cpu0 = s.gateway.cpuSeconds();
        const nats0 = cpuSeconds(natsPid);
        const t0 = performance.now();
        s.subscribers.send('start');
        const r = await publish(s.gateway, o.duration);
        s.subscribers.send('stop');
        const counted = await s.subscribers.next<Counted>();
        const seconds = (performance.now() - t0) / 1000;
        const us = ((s.gateway.cpuSeconds() - cpu0) / Math.max(r.requests, 1)) * 1e6;
        const natsUse = (cpuSeconds(natsPid) - nats0) / seconds;
        loop[s.name].push(await s.gateway.eventLoopP99());
        if (s.name === 'fleetgate') natsCores.push(natsUse);
        rates[s.name].push(r.rps);
        deliveries[s.name].push(counted.rate);
        cpuUs[s.name].push(us);
        errors += r.bad;
        closed = Math.max(closed, counted.closed);
        progress(`${label} round ${round}/${o.rounds} ${(s.name === 'fleetgate' ? 'nats bus' : 'local bus').padEnd(9)} ${fmt(r.rps)} req/s, ${fmt(counted.rate)} deliveries/s, gateway ${us.toFixed(1)} µs CPU per publish${s.name === 'fleetgate' ? `, nats-server ${(natsUse * 100).toFixed(0)}% CPU` : ''}${r.bad ? ` (${r.bad} non-2xx/errors)` : ''}`);
      }
    }
    const fleetgate = summarize(rates.fleetgate);
    const reference = summarize(rates.reference);
    const median = (v: number[]) => summarize(v).median;
    const cpuPerRequestUs = { fleetgate: median(cpuUs.fleetgate), reference: median(cpuUs.reference) };
    const delivered = { fleetgate: summarize(deliveries.fleetgate), reference: summarize(deliveries.reference) };
    return {
      fleetgate, reference, ratio: fleetgate.median / reference.median, errors: errors + closed, eventLoopP99: summarize(loop.fleetgate), unit: 'req/s',
      deliveries: delivered, cpuPerRequestUs, natsCores: median(natsCores),
      note: `fleetgate: 1 instance, FLEETGATE_BUS=nats; reference: the same with the local bus; ${perProtocol} WS + ${perProtocol} MQTT subscribers each; `
        + `${fmt(delivered.fleetgate.median)} / ${fmt(delivered.reference.median)} deliveries/s; nats-server ${(median(natsCores) * 100).toFixed(0)}% CPU; `
        + `event-loop p99 of the local-bus gateway ${median(loop.reference).toFixed(1)} ms`,
    };
  } finally {
    for (const stop of stops) await stop().catch(() => {});
  }
}
