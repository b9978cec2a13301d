import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { haproxyConfig } from '../../src/cluster/haproxy.ts';
import { startLocalCluster } from '../../src/cluster/local-cluster.ts';
import { freePort } from '../../src/cluster/ports.ts';
import { startHaproxy } from '../../src/cluster/servers.ts';
import { openPostgresStore } from '../../src/registry/postgres-store.ts';
import { Provisioning } from '../../src/registry/service.ts';
import { RegistryView } from '../../src/registry/view.ts';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { instancePid, pidOf } from '../lib/cluster.ts';
import { cpuSeconds } from '../lib/servers.ts';
import { fmt, summarize, type Summary } from '../lib/stats.ts';
import { startGenerator, type Generator } from '../load/spawn.ts';
import { kSenmlBody } from './http-publish.ts';

interface Counted {
  readonly delivered: number;
  readonly rate: number;
  readonly closed: number;
}

/** One cluster size's medians over the rounds. */
export interface ScaleRow {
  readonly deliveries: Summary;
  readonly publishes: Summary;
  /** the instances' CPU (sum over all of them, from /proc) per delivery, µs */
  readonly gatewayCpuPerDeliveryUs: Summary;
  /** cores busy, median: the instances' sum, HAProxy, nats-server, PostgreSQL is idle */
  readonly gatewayCores: number;
  readonly haproxyCores: number;
  readonly natsCores: number;
  /** WS + MQTT subscribers each instance holds, as the balancer placed them */
  readonly placement: readonly number[];
}

export type ClusterScaleResult = AbResult & { instances: Record<string, ScaleRow> };

const kSizes = [1, 2, 3] as const;

async function connectionsOn(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return [...text.matchAll(/^fleetgate_connections\{[^}]*protocol="(?:ws|mqtt)"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/**
 * cluster-scale: deliveries per second of 1, 2 and 3 instances behind HAProxy. One cluster as `fleetgate cluster`
 * starts it (src/cluster/local-cluster.ts: nats-server, PostgreSQL, Redis, three instances), plus a balancer over the
 * first one and one over the first two (the same generated HAProxy config: TCP mode, PROXY v2, leastconn). Each size
 * has its own raw channel, so that only its own instances hold subscribers of it and nothing of one size's load
 * reaches the others. Per size: `perProtocol` WS and as many MQTT subscribers connected through its balancer (spread by
 * leastconn), and the HTTP publish load (autocannon) through the same balancer; sizes alternate within each round,
 * each round starting with the next size. On two cores more instances cannot add throughput: the figure to read is
 * the instances' CPU per delivery (summed from /proc), which says what each added instance costs. Ratio: 3 instances'
 * deliveries/s over 1 instance's.
 */
export async function clusterScale(o: LoadOptions, progress: (line: string) => void, perProtocol = 10): Promise<ClusterScaleResult> {
  const label = 'cluster-scale';
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-cluster-'));
  chmodSync(dir, 0o755); // PostgreSQL runs as its own user under root
  const stops: (() => Promise<void>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
  const stopAll = async () => {
    for (const stop of stops) await stop().catch(() => {});
  };
  try {
    progress(`${label}: starting nats-server, PostgreSQL, Redis, 3 instances and HAProxy`);
    const cluster = await startLocalCluster({ dir, instances: 3, http: 0, mqtt: 0, env: { ...process.env, FLEETGATE_LOG_LEVEL: 'warn' }, durable: false });
    stops.unshift(cluster.stop);
    const pids = cluster.instances.map((i) => instancePid(i.http));
    const natsPid = pidOf((cmd) => cmd[0]!.endsWith('nats-server') && cmd.includes(String(cluster.services.nats.port)));

    // The registry: one client that publishes and subscribes, a raw channel per size.
    const store = openPostgresStore(cluster.store);
    const view = new RegistryView(store);
    await view.load();
    const p = new Provisioning(store, view);
    const domain = await p.createDomain({ name: `bench-${Date.now()}` });
    const channels = await Promise.all(kSizes.map((n) => p.createChannel(domain.id, { name: `scale-${n}`, payload_format: 'raw' })));
    const { client, secret } = await p.createClient(domain.id, { name: 'bench' });
    await p.connect(domain.id, { client_ids: [client.id], channel_ids: channels.map((c) => c.id), types: ['publish', 'subscribe'] });
    await store.close();

    const sizes: { n: number; http: number; topic: string; subscribers: Generator; haproxyPid: number; placement: number[] }[] = [];
    for (const [i, n] of kSizes.entries()) {
      let frontends: { http: number; mqtt: number } = cluster.frontends;
      if (n < cluster.instances.length) {
        frontends = { http: await freePort(), mqtt: await freePort() };
        const config = join(dir, `haproxy-${n}.cfg`);
        writeFileSync(config, haproxyConfig(frontends, cluster.instances.slice(0, n), '127.0.0.1'));
        const haproxy = await startHaproxy(frontends.http, config);
        stops.unshift(() => haproxy.stop());
      }
      const haproxyPid = pidOf((cmd) => cmd[0]!.endsWith('haproxy') && cmd.includes(n < cluster.instances.length ? join(dir, `haproxy-${n}.cfg`) : join(dir, 'haproxy.cfg')));
      const topic = `m/${domain.id}/c/${channels[i]!.id}`;
      // The instances learn of the client through LISTEN/NOTIFY, the balancer of its servers through its checks.
      for (let tries = 0; ; tries++) {
        const res = await fetch(`http://127.0.0.1:${frontends.http}/http/${topic}`, { method: 'POST', headers: { authorization: `Client ${secret}` }, body: 'x' }).catch(() => undefined);
        if (res?.status === 202) break;
        if (tries > 200) throw new Error(`${label}: publishing through the balancer of ${n} instance(s) answers ${res?.status ?? 'nothing'}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const before = await Promise.all(cluster.instances.map((c) => connectionsOn(c.http)));
      const subscribers = startGenerator('subscribers.ts', {
        port: frontends.http, path: `/ws/${topic}?authorization=${encodeURIComponent(secret)}`,
        'mqtt-port': frontends.mqtt, topic, username: client.id, password: secret, ws: perProtocol, mqtt: perProtocol,
      });
      stops.unshift(() => subscribers.finish());
      await subscribers.next();
      const after = await Promise.all(cluster.instances.map((c) => connectionsOn(c.http)));
      const placement = after.map((a, j) => a - before[j]!).slice(0, n);
      progress(`${label}: ${n} instance(s): the balancer placed the ${2 * perProtocol} subscribers ${placement.join(' + ')}`);
      sizes.push({ n, http: frontends.http, topic, subscribers, haproxyPid, placement });
    }

    const publish = async (port: number, topic: string, seconds: number) => {
      const r = await autocannon({
        url: `http://127.0.0.1:${port}/http/${topic}`, method: 'POST', headers: { authorization: `Client ${secret}` }, body: kSenmlBody,
        duration: seconds, connections: o.connections, pipelining: o.pipelining,
      });
      return { rps: r.requests.average, bad: r.non2xx + r.errors + r.timeouts };
    };
    const rows = new Map(kSizes.map((n) => [n, { deliveries: [] as number[], publishes: [] as number[], us: [] as number[], gateway: [] as number[], haproxy: [] as number[], nats: [] as number[] }]));
    let errors = 0;
    let closed = 0;
    for (const s of sizes) await publish(s.http, s.topic, 1); // warm-up
    for (let round = 1; round <= o.rounds; round++) {
      // each round starts with another size: none always runs first, after the warm-up or a pause
      for (const s of [...sizes.slice((round - 1) % sizes.length), ...sizes.slice(0, (round - 1) % sizes.length)]) {
        const gateways = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
        const cpu0 = { gateway: gateways(), haproxy: cpuSeconds(s.haproxyPid), nats: cpuSeconds(natsPid) };
        const t0 = performance.now();
        s.subscribers.send('start');
        const r = await publish(s.http, s.topic, o.duration);
        s.subscribers.send('stop');
        const counted = await s.subscribers.next<Counted>();
        const seconds = (performance.now() - t0) / 1000;
        const gatewayCpu = gateways() - cpu0.gateway;
        const us = (gatewayCpu / Math.max(counted.delivered, 1)) * 1e6;
        const row = rows.get(s.n as (typeof kSizes)[number])!;
        row.deliveries.push(counted.rate);
        row.publishes.push(r.rps);
        row.us.push(us);
        row.gateway.push(gatewayCpu / seconds);
        row.haproxy.push((cpuSeconds(s.haproxyPid) - cpu0.haproxy) / seconds);
        row.nats.push((cpuSeconds(natsPid) - cpu0.nats) / seconds);
        errors += r.bad;
        closed = Math.max(closed, counted.closed);
        progress(`${label} round ${round}/${o.rounds} ${s.n} instance(s) ${fmt(counted.rate)} deliveries/s (${fmt(r.rps)} publishes/s), instances ${(row.gateway.at(-1)! * 100).toFixed(0)}% CPU = ${us.toFixed(2)} µs per delivery, haproxy ${(row.haproxy.at(-1)! * 100).toFixed(0)}%, nats-server ${(row.nats.at(-1)! * 100).toFixed(0)}%${r.bad ? ` (${r.bad} non-2xx/errors)` : ''}`);
      }
    }
    const median = (v: number[]) => summarize(v).median;
    const instances: Record<string, ScaleRow> = {};
    for (const s of sizes) {
      const row = rows.get(s.n as (typeof kSizes)[number])!;
      instances[String(s.n)] = {
        deliveries: summarize(row.deliveries), publishes: summarize(row.publishes), gatewayCpuPerDeliveryUs: summarize(row.us),
        gatewayCores: median(row.gateway), haproxyCores: median(row.haproxy), natsCores: median(row.nats), placement: s.placement,
      };
    }
    const one = instances['1']!;
    const three = instances['3']!;
    return {
      fleetgate: three.deliveries, reference: one.deliveries, ratio: three.deliveries.median / one.deliveries.median, errors: errors + closed, eventLoopP99: undefined,
      unit: 'deliveries/s', instances,
      note: `fleetgate: 3 instances behind HAProxy, reference: 1; ${perProtocol} WS + ${perProtocol} MQTT subscribers through the balancer; instances' CPU per delivery `
        + kSizes.map((n) => `${n}: ${instances[String(n)]!.gatewayCpuPerDeliveryUs.median.toFixed(2)} µs`).join(', ')
        + `; deliveries/s 2 instances ${fmt(instances['2']!.deliveries.median)}`,
    };
  } finally {
    await stopAll();
  }
}
