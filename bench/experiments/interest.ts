import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { freePort } from '../../src/cluster/ports.ts';
import { startNats, startPostgres } from '../../src/cluster/servers.ts';
import { startService, type Service } from '../../src/cluster/service.ts';
import { openPostgresStore } from '../../src/registry/postgres-store.ts';
import { Provisioning } from '../../src/registry/service.ts';
import { RegistryView } from '../../src/registry/view.ts';
import { instancePid, pidOf } from '../lib/cluster.ts';
import { cpuSeconds } from '../lib/servers.ts';
import { fmt, summarize } from '../lib/stats.ts';
import { startGenerator, type Generator } from '../load/spawn.ts';

/**
 * Issue 14's "measure per-channel subscriptions against one wildcard subscription (`m.>`)": the same 3-instance
 * cluster built twice from two builds of fleetgate (`--variant name=path/to/main.js`, repeated), each on its own
 * nats-server, one PostgreSQL registry for both. `--channels` raw channels, each with one WebSocket subscriber on one
 * instance only (channel i on instance i mod 3); HTTP publishers cycling over all channels on the first instance
 * (`--publish-on one`, the default: the other two do nothing but receive from the bus and deliver, so their CPU is the
 * price of interest alone) or on every instance (`--publish-on all`). Two loads, variants alternating within each round:
 * a fixed rate (`--rate` publishes/s in all: the instances' CPU is the figure) and as fast as they go (deliveries/s).
 * Prints one line per round and the medians. Run it by hand (an experiment, not a scenario): bench/README.md, "Cluster".
 */
const { values } = parseArgs({
  options: {
    variant: { type: 'string', multiple: true, default: ['per-channel=dist/main.js'] },
    channels: { type: 'string', default: '300' },
    rate: { type: 'string', default: '3000' },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '30' },
    'publish-on': { type: 'string', default: 'one' },
  },
});
const kInstances = 3;
const channelCount = Number(values.channels);
const duration = Number(values.duration);
const log = (line: string) => process.stderr.write(line + '\n');

const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-interest-'));
chmodSync(dir, 0o755); // PostgreSQL runs as its own user under root
const stops: (() => Promise<unknown>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
async function stopAll(): Promise<void> {
  for (const stop of stops.splice(0)) await stop().catch(() => {});
}

interface Variant {
  readonly name: string;
  readonly instances: (Service & { http: number; pid: number })[];
  readonly natsPid: number;
  subscribers?: Generator;
}

try {
  const postgres = await startPostgres(await freePort(), join(dir, 'postgres'), { durable: false });
  stops.unshift(() => postgres.stop());
  const variants: Variant[] = [];
  for (const spec of values.variant!) {
    const [name, main] = spec.split('=') as [string, string];
    const nats = await startNats(await freePort());
    stops.unshift(() => nats.stop());
    const natsPid = pidOf((cmd) => cmd[0]!.endsWith('nats-server') && cmd.includes(String(nats.port)));
    const instances: Variant['instances'] = [];
    for (let i = 1; i <= kInstances; i++) {
      // one at a time: the first one of all runs the migrations
      const http = await freePort();
      const env = {
        ...process.env, FLEETGATE_HOST: '127.0.0.1', FLEETGATE_HTTP_PORT: String(http), FLEETGATE_MQTT_PORT: String(await freePort()),
        FLEETGATE_HTTPS_PORT: 'off', FLEETGATE_MQTTS_PORT: 'off', FLEETGATE_STORE: postgres.url, FLEETGATE_BUS: `nats://127.0.0.1:${nats.port}`, FLEETGATE_LOG_LEVEL: 'warn',
      };
      const service = await startService({ name: `${name}-${i}`, port: http, command: process.execPath, args: [resolve(main), 'serve'], env, startTimeout: 30_000 });
      stops.unshift(() => service.stop());
      instances.push(Object.assign(service, { http, pid: instancePid(http) }));
    }
    variants.push({ name, instances, natsPid });
  }

  const store = openPostgresStore(postgres.url);
  const view = new RegistryView(store);
  await view.load();
  const p = new Provisioning(store, view);
  const domain = await p.createDomain({ name: `interest-${Date.now()}` });
  const channels = [];
  for (let i = 0; i < channelCount; i++) channels.push(await p.createChannel(domain.id, { name: `c${i}`, payload_format: 'raw' }));
  const { client, secret } = await p.createClient(domain.id, { name: 'bench' });
  await p.connect(domain.id, { client_ids: [client.id], channel_ids: channels.map((c) => c.id), types: ['publish', 'subscribe'] });
  await store.close();
  const topics = channels.map((c) => `m/${domain.id}/c/${c.id}`);
  const auth = `?authorization=${encodeURIComponent(secret)}`;

  for (const v of variants) {
    // every instance must know the client (LISTEN/NOTIFY) before the subscribers connect
    for (const instance of v.instances) {
      for (let tries = 0; ; tries++) {
        const res = await fetch(`http://127.0.0.1:${instance.http}/http/${topics.at(-1)}`, { method: 'POST', headers: { authorization: `Client ${secret}` }, body: 'x' });
        if (res.status === 202) break;
        if (tries > 200) throw new Error(`${instance.name} answers ${res.status}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const targets = topics.map((t, i) => ({ port: v.instances[i % kInstances]!.http, path: `/ws/${t}${auth}` }));
    // a file: a thousand paths are more than one argument may hold
    writeFileSync(join(dir, `${v.name}-targets.json`), JSON.stringify(targets));
    v.subscribers = startGenerator('subscribers.ts', { targets: join(dir, `${v.name}-targets.json`), mqtt: 0 });
    stops.unshift(() => v.subscribers!.finish());
    await v.subscribers.next();
  }
  log(`${variants.length} variant(s) × ${kInstances} instances, ${channelCount} channels with one WS subscriber each, publishers cycling over all channels on ${values['publish-on'] === 'all' ? 'every instance' : 'the first instance'}`);

  /** Publishers on every instance of a variant at once; `rate`: publishes/s in all, else as fast as they go. */
  const publish = async (v: Variant, seconds: number, rate: number | undefined) => {
    const publishers = values['publish-on'] === 'all' ? v.instances : v.instances.slice(0, 1);
    const results = await Promise.all(publishers.map((instance, k) => {
      let next = k;
      return autocannon({
        url: `http://127.0.0.1:${instance.http}/http/${topics[0]}`, method: 'POST', headers: { authorization: `Client ${secret}` }, body: 'x'.repeat(100),
        duration: seconds, connections: Number(values.connections), pipelining: 1, ...(rate && { overallRate: rate / publishers.length }),
        requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, path: `/http/${topics[next++ % topics.length]}` }) }],
      });
    }));
    return { rps: results.reduce((s, r) => s + r.requests.average, 0), bad: results.reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0) };
  };
  type Row = { deliveries: number[]; rps: number[]; cores: number[][]; nats: number[]; us: number[]; receiverUs: number[] };
  const rows = new Map<string, Row>();
  const measure = async (v: Variant, mode: 'rate' | 'max', round: number) => {
    const cpu = () => v.instances.map((i) => cpuSeconds(i.pid));
    const before = { cpu: cpu(), nats: cpuSeconds(v.natsPid), t: performance.now() };
    v.subscribers!.send('start');
    const r = await publish(v, duration, mode === 'rate' ? Number(values.rate) : undefined);
    v.subscribers!.send('stop');
    const counted = await v.subscribers!.next<{ delivered: number; rate: number; closed: number }>();
    const seconds = (performance.now() - before.t) / 1000;
    const cores = cpu().map((c, i) => (c - before.cpu[i]!) / seconds);
    const nats = (cpuSeconds(v.natsPid) - before.nats) / seconds;
    const us = (cores.reduce((a, b) => a + b, 0) * seconds / Math.max(counted.delivered, 1)) * 1e6;
    const key = `${v.name} ${mode}`;
    const row = rows.get(key) ?? { deliveries: [], rps: [], cores: [], nats: [], us: [], receiverUs: [] };
    // publishing on the first instance only: the others make two thirds of the deliveries, every one from the bus
    const receiverUs = ((cores[1]! + cores[2]!) * seconds / Math.max((counted.delivered * 2) / 3, 1)) * 1e6;
    rows.set(key, row);
    row.deliveries.push(counted.rate);
    row.rps.push(r.rps);
    row.cores.push(cores);
    row.nats.push(nats);
    row.us.push(us);
    row.receiverUs.push(receiverUs);
    log(`round ${round} ${key.padEnd(20)} ${fmt(r.rps)} publishes/s, ${fmt(counted.rate)} deliveries/s, instances ${cores.map((c) => `${(c * 100).toFixed(0)}%`).join(' ')} CPU = ${us.toFixed(1)} µs per delivery${values['publish-on'] === 'all' ? '' : ` (instances 2 + 3: ${receiverUs.toFixed(1)} µs per delivery they make)`}, nats-server ${(nats * 100).toFixed(0)}%${r.bad ? `, ${r.bad} errors` : ''}${counted.closed ? `, ${counted.closed} closed` : ''}`);
  };
  for (const v of variants) await publish(v, 1, undefined); // warm-up
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const mode of ['rate', 'max'] as const) for (const v of variants) await measure(v, mode, round);
  }
  const med = (x: number[]) => summarize(x).median;
  const spread = (x: number[]) => `±${(summarize(x).spread * 100).toFixed(0)}%`;
  const one = values['publish-on'] !== 'all';
  process.stdout.write(`| variant, load | publishes/s | deliveries/s | instances CPU (sum, cores) | µs instance CPU per delivery |${one ? ' instances 2 + 3: CPU (cores), µs per delivery they make |' : ''} nats-server CPU |\n|---|---|---|---|---|${one ? '---|' : ''}---|\n`);
  for (const [key, row] of rows) {
    const sums = row.cores.map((c) => c.reduce((a, b) => a + b, 0));
    process.stdout.write(`| ${key} | ${fmt(med(row.rps))} | ${fmt(med(row.deliveries))} ${spread(row.deliveries)} | ${med(sums).toFixed(2)} ${spread(sums)} | ${med(row.us).toFixed(1)} ${spread(row.us)} |${one ? ` ${med(row.cores.map((c) => c[1]! + c[2]!)).toFixed(2)}, ${med(row.receiverUs).toFixed(1)} ${spread(row.receiverUs)} |` : ''} ${(med(row.nats) * 100).toFixed(0)}% |\n`);
  }
} finally {
  await stopAll();
}
