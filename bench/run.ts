import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { missingPackages } from '../src/cluster/servers.ts';
import type { AbResult, LoadOptions } from './lib/ab.ts';
import { readBaseline } from './lib/gate.ts';
import { gitDirty, gitSha } from './lib/git.ts';
import { renderPlot } from './lib/plot.ts';
import { createProgress } from './lib/progress.ts';
import { fmtValue, markdownReport, resultsTable } from './lib/report.ts';
import { kBaselineFile, kDocsPlot, kMinGateRounds, kResultsDir, resultsName, shown, type Machine, type ResultsFile, type ScenarioResult } from './lib/results.ts';
import { startFleetgate, startMosquitto, startReference, startReferenceWs, type Fleetgate, type Server } from './lib/servers.ts';
import { pct } from './lib/stats.ts';
import { jwtCached, jwtCold } from './scenarios/auth.ts';
import { clusterFanout } from './scenarios/cluster-fanout.ts';
import { clusterScale } from './scenarios/cluster-scale.ts';
import { httpPublish } from './scenarios/http-publish.ts';
import { mqttFanout, mqttFanoutDurable } from './scenarios/mqtt-fanout.ts';
import { idleConnections } from './scenarios/idle.ts';
import { mixed } from './scenarios/mixed.ts';
import { connectionStorm } from './scenarios/storm.ts';
import { httpsPublish, mtlsPublish, startTlsGateways, tlsHandshakes, type TlsGateways } from './scenarios/tls.ts';
import { wsFanout } from './scenarios/ws-fanout.ts';

/**
 * `npm run bench [-- --scenario http-publish-senml --duration 5 --rounds 3 --connections 100 --pipelining 10]`: runs
 * each scenario against fleetgate and its reference in the same run, with progress on stderr; prints the table and
 * writes bench/results/<timestamp>-<sha>.json, .md (the report) and .svg (the plot). A run of every scenario (no
 * --scenario) also copies the plot to docs/bench.svg. `--scenario` may repeat and may hold `*` (`mqtt-fanout-*`);
 * `--list` lists the scenarios (with --scenario: those it selects) and runs nothing. Exits 1 when a scenario failed
 * (the others still run, and are written).
 */
const { values } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '100' },
    pipelining: { type: 'string', default: '10' },
    list: { type: 'boolean', default: false },
  },
});

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}
const number = (name: 'duration' | 'rounds' | 'connections' | 'pipelining', integer: boolean) => {
  const v = Number(values[name]);
  if (!(v > 0) || (integer && !Number.isInteger(v))) usage(`--${name} must be a positive ${integer ? 'integer' : 'number'}; got ${values[name]}`);
  return v;
};
const options: LoadOptions = { duration: number('duration', false), rounds: number('rounds', true), connections: number('connections', true), pipelining: number('pipelining', true) };

// 'nats', 'cluster': Debian packages the scenario's own servers come from (nothing shared is started for them)
type Need = 'mosquitto' | 'tls' | 'mtls' | 'ws' | 'nats' | 'cluster';
/** The servers shared by the scenarios, started once, only when a chosen scenario needs them. */
interface Refs {
  /** the bare uWebSockets.js HTTP handler (bench/reference-uws.ts): always started */
  readonly http: Server;
  /** Debian's mosquitto on a free port (need 'mosquitto') */
  readonly mosquitto: Server | undefined;
  /** two TLS gateways on one PKI (need 'tls'; 'mtls' adds the mutual one) */
  readonly tls: TlsGateways | undefined;
  /** a bare uWebSockets.js app republishing each WS frame with app.publish (need 'ws') */
  readonly ws: Server | undefined;
}
interface Scenario {
  /** the unit of the fleetgate and reference numbers (a `unit` in the scenario's result wins) */
  readonly unit: string;
  readonly needs?: readonly Need[];
  /** expected seconds, for the progress bar's time left; default: an abRun (warm-ups + rounds × 2 sides × duration) */
  readonly seconds?: (o: LoadOptions) => number;
  readonly run: (g: Fleetgate, r: Refs) => Promise<AbResult>;
}

const kAbSeconds = (o: LoadOptions) => 2 + o.rounds * 2 * o.duration + 3;
// Minting: 40,000 tokens per second of load (see scenarios/auth.ts), signed at roughly 45,000/s here.
const kColdSeconds = (o: LoadOptions) => kAbSeconds(o) + (40_000 * (o.duration * o.rounds + 1)) / 45_000;
// Each round starts a generator process per side (connect, 1 s warm-up, then the duration).
const kMqttSeconds = (o: LoadOptions) => o.rounds * 2 * (o.duration + 2.5);
// Each round starts the subscribers' generator per side.
const kWsSeconds = (o: LoadOptions) => 6 + o.rounds * 2 * (o.duration + 2);
const progressLine = (line: string) => progress.log(line);

const scenarios: Record<string, Scenario> = {
  'http-publish-senml': { unit: 'req/s', run: (g, r) => httpPublish('senml', g, r.http, options, progressLine) },
  'http-publish-raw': { unit: 'req/s', run: (g, r) => httpPublish('raw', g, r.http, options, progressLine) },
  'http-publish-jwt-cached': { unit: 'req/s', run: (g, r) => jwtCached(g, r.http, options, progressLine) },
  'http-publish-jwt-cold': { unit: 'req/s', seconds: kColdSeconds, run: (g, r) => jwtCold(g, r.http, options, progressLine) },
  'http-publish-jwt-cold-5000': { unit: 'req/s', seconds: kColdSeconds, run: (g, r) => jwtCold(g, r.http, options, progressLine, 5000) },
  'mqtt-fanout-10x10-qos0': { unit: 'deliveries/s', needs: ['mosquitto'], seconds: kMqttSeconds, run: (g, r) => mqttFanout({ publishers: 10, subscribers: 10, qos: 0 }, g, r.mosquitto!, options, progressLine) },
  'mqtt-fanout-1x100-qos0': { unit: 'deliveries/s', needs: ['mosquitto'], seconds: kMqttSeconds, run: (g, r) => mqttFanout({ publishers: 1, subscribers: 100, qos: 0 }, g, r.mosquitto!, options, progressLine) },
  'mqtt-fanout-10x10-qos1': { unit: 'deliveries/s', needs: ['mosquitto'], seconds: kMqttSeconds, run: (g, r) => mqttFanout({ publishers: 10, subscribers: 10, qos: 1 }, g, r.mosquitto!, options, progressLine) },
  // Starts its own brokers: fleetgate with FLEETGATE_MQTT_PERSISTENCE=sqlite and =memory, mosquitto with persistence.
  'mqtt-fanout-10x10-qos1-durable': { unit: 'deliveries/s', needs: ['mosquitto'], seconds: (o) => 8 + (kMqttSeconds(o) * 3) / 2, run: () => mqttFanoutDurable(options, progressLine) },
  'mqtt-shared-10x3-qos0': { unit: 'deliveries/s', needs: ['mosquitto'], seconds: kMqttSeconds, run: (g, r) => mqttFanout({ publishers: 10, subscribers: 3, qos: 0, share: 'bench' }, g, r.mosquitto!, options, progressLine) },
  // Each side of these is fleetgate: `reference` is the faster transport (see scenarios/tls.ts).
  'https-publish': { unit: 'req/s', needs: ['tls'], run: (_g, r) => httpsPublish(r.tls!, options, progressLine) },
  'mtls-publish-header': { unit: 'req/s', needs: ['mtls'], run: (_g, r) => mtlsPublish('header', r.tls!, options, progressLine) },
  'mtls-publish-cert': { unit: 'req/s', needs: ['mtls'], run: (_g, r) => mtlsPublish('cert', r.tls!, options, progressLine) },
  'tls-handshakes': { unit: 'handshakes/s', needs: ['mtls'], seconds: (o) => 3 + o.rounds * 3 * (o.duration + 0.5) + 3, run: (_g, r) => tlsHandshakes(r.tls!, options, progressLine) },

  'ws-fanout-1x100': { unit: 'deliveries/s', needs: ['ws'], seconds: kWsSeconds, run: (g, r) => wsFanout(100, g, r.ws!, options, progressLine) },
  'ws-fanout-1x1000': { unit: 'deliveries/s', needs: ['ws'], seconds: kWsSeconds, run: (g, r) => wsFanout(1000, g, r.ws!, options, progressLine) },
  'mixed-http-ws-mqtt': { unit: 'req/s', seconds: (o) => 5 + o.rounds * 2 * o.duration, run: (g) => mixed(g, options, progressLine) },
  // These start their own gateways, nats-server (and PostgreSQL, HAProxy): see bench/README.md, "Cluster".
  'cluster-fanout': { unit: 'req/s', needs: ['nats'], seconds: (o) => 10 + o.rounds * 2 * (o.duration + 1), run: () => clusterFanout(options, progressLine) },
  'cluster-scale': { unit: 'deliveries/s', needs: ['cluster'], seconds: (o) => 40 + o.rounds * 3 * (o.duration + 1), run: () => clusterScale(options, progressLine) },
  'connection-storm-5000': { unit: 'connects/s', needs: ['mosquitto'], seconds: (o) => 3 + (o.rounds + 1) * 6, run: (g, r) => connectionStorm(5000, g, r.mosquitto!, options, progressLine) },
  // These start their own fresh servers each round (two gateways: see scenarios/idle.ts): memory grown in an earlier
  // flood would blur the difference.
  'idle-ws-10000': { unit: 'KiB/connection', seconds: (o) => o.rounds * 35, run: () => idleConnections('ws', 10_000, options, progressLine) },
  'idle-mqtt-10000': { unit: 'KiB/connection', needs: ['mosquitto'], seconds: (o) => o.rounds * 41, run: () => idleConnections('mqtt', 10_000, options, progressLine) },
  // issue 15's measure: 2,000 idle MQTT clients
  'idle-mqtt-2000': { unit: 'KiB/connection', needs: ['mosquitto'], seconds: (o) => o.rounds * 30, run: () => idleConnections('mqtt', 2_000, options, progressLine) },
};
/** Older names that still select a scenario. */
const kAliases: Record<string, string> = { 'http-publish': 'http-publish-senml' };

const full = !values.scenario;
const wanted = full ? Object.keys(scenarios) : [...new Set(values.scenario!.flatMap((pattern) => {
  const name = kAliases[pattern] ?? pattern;
  if (!name.includes('*')) return name in scenarios ? [name] : usage(`unknown scenario ${pattern}; known: ${Object.keys(scenarios).join(', ')} (npm run bench -- --list)`);
  const re = new RegExp(`^${name.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  const matched = Object.keys(scenarios).filter((n) => re.test(n));
  return matched.length > 0 ? matched : usage(`no scenario matches ${pattern}; known: ${Object.keys(scenarios).join(', ')}`);
}))];

// --list: the scenarios (those --scenario chose, if given), without running them.
if (values.list) {
  for (const name of wanted) process.stdout.write(`${name.padEnd(28)} ${scenarios[name]!.unit}${scenarios[name]!.needs ? ` (needs ${scenarios[name]!.needs!.join(', ')})` : ''}\n`);
  process.exit(0);
}

// A full run goes on without a Debian package a scenario needs (and says so); asking for that scenario by name is an error.
const skipped: Record<string, string> = {};
const missingCluster = missingPackages(['nats-server', 'postgres', 'redis-server', 'haproxy']);
const missing: Partial<Record<Need, { readonly why: string; readonly named: string }>> = {
  ...(!existsSync('/usr/sbin/mosquitto') && { mosquitto: { why: "no /usr/sbin/mosquitto (apt-get install mosquitto)", named: "compares with Debian's mosquitto, which is not installed: apt-get install mosquitto" } }),
  ...(missingPackages(['nats-server']).length > 0 && { nats: { why: 'no nats-server (apt-get install nats-server)', named: 'starts Debian\'s nats-server, which is not installed: apt-get install nats-server' } }),
  ...(missingCluster.length > 0 && { cluster: { why: `no ${missingCluster.join(', ')} (apt-get install ${missingCluster.join(' ')})`, named: `starts a cluster from Debian's packages; missing: apt-get install ${missingCluster.join(' ')}` } }),
};
for (const name of wanted) {
  const need = scenarios[name]!.needs?.find((n) => missing[n]);
  if (need === undefined) continue;
  if (!full) usage(`${name} ${missing[need]!.named}`);
  skipped[name] = missing[need]!.why;
}
const chosen = wanted.filter((n) => !(n in skipped));
const needs = new Set(chosen.flatMap((n) => scenarios[n]!.needs ?? []));

const sha = gitSha() ?? 'unknown';
const dirty = gitDirty();
const machine: Machine = {
  cpu: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, node: process.version, os: `${type()} ${release()}`,
  memoryGiB: Math.round(totalmem() / 2 ** 30), loadavg: loadavg().map((l) => Number(l.toFixed(2))),
  ...(needs.has('mosquitto') && { references: { mosquitto: /version (\S+)/.exec(spawnSync('/usr/sbin/mosquitto', ['-h'], { encoding: 'utf8' }).stdout)?.[1] ?? '?' } }),
};
process.stderr.write(`fleetgate bench @ ${sha}${dirty ? ' (+ uncommitted changes)' : ''} on ${machine.cores} × ${machine.cpu}, Node ${machine.node}, load ${machine.loadavg!.join(' ')}; `
  + `${options.rounds} rounds × ${options.duration} s, ${options.connections} connections, ${options.pipelining} pipelined\n`);
if (options.rounds < kMinGateRounds) process.stderr.write(`note: fewer than ${kMinGateRounds} rounds: bench:gate and bench:baseline will refuse these results\n`);
for (const [name, why] of Object.entries(skipped)) process.stderr.write(`skipping ${name}: ${why}\n`);

const progress = createProgress(chosen.map((name) => ({ name, seconds: (scenarios[name]!.seconds ?? kAbSeconds)(options) })));
process.stderr.write(`starting the reference${needs.has('mosquitto') ? ', mosquitto' : ''}${needs.has('ws') ? ', the WS reference' : ''}${needs.has('tls') || needs.has('mtls') ? ', the TLS gateways' : ''} and fleetgate\n`);
const stops: (() => Promise<void>)[] = [];
const stopAll = () => Promise.race([Promise.all(stops.map((s) => s().catch(() => {}))), new Promise((r) => setTimeout(r, 5000))]);
process.once('SIGINT', () => {
  progress.close();
  process.stderr.write('interrupted: stopping the servers\n');
  void stopAll().then(() => process.exit(130));
});

const results: Record<string, ScenarioResult> = {};
const failed: Record<string, string> = {};
try {
  // Start-up: the shared servers this run needs, each stopped at the end (and on Ctrl-C).
  const http = await startReference();
  stops.push(http.stop);
  const mosquitto = needs.has('mosquitto') ? await startMosquitto() : undefined;
  if (mosquitto) stops.push(mosquitto.stop);
  const tls = needs.has('tls') || needs.has('mtls') ? await startTlsGateways(needs.has('mtls')) : undefined;
  if (tls) stops.push(tls.stop);
  const ws = needs.has('ws') ? await startReferenceWs() : undefined;
  if (ws) stops.push(ws.stop);
  const gateway = await startFleetgate();
  stops.push(gateway.stop);
  const refs: Refs = { http, mosquitto, tls, ws };

  for (const [i, name] of chosen.entries()) {
    progress.begin(i);
    const started = performance.now();
    try {
      const r = await scenarios[name]!.run(gateway, refs);
      const seconds = Math.round((performance.now() - started) / 100) / 10;
      const stored: ScenarioResult = { unit: scenarios[name]!.unit, ...r, seconds };
      results[name] = stored;
      const unit = stored.unit!;
      progress.end(i, `${name}: ratio ${r.ratio.toFixed(2)} · fleetgate ${fmtValue(r.fleetgate.median)} ${unit} ±${pct(r.fleetgate.spread)} · reference ${fmtValue(r.reference.median)} ${unit} ±${pct(r.reference.spread)}${r.errors ? ` · ${r.errors} errors` : ''} · ${seconds} s`);
    } catch (err) {
      failed[name] = (err as Error).stack ?? String(err);
      progress.end(i, `${name}: FAILED: ${(err as Error).message}`);
    }
  }
} catch (err) {
  // A server did not start: nothing ran.
  progress.close();
  await stopAll();
  throw err;
}
progress.close();
await stopAll();

const date = new Date();
const file: ResultsFile = {
  format: 2, sha, dirty, date: date.toISOString(), machine, options: { duration: options.duration, rounds: options.rounds, connections: options.connections, pipelining: options.pipelining },
  full, results, ...(Object.keys(skipped).length > 0 && { skipped }), ...(Object.keys(failed).length > 0 && { failed }),
};
mkdirSync(kResultsDir, { recursive: true });
const base = join(kResultsDir, resultsName(date, sha));
writeFileSync(`${base}.json`, JSON.stringify(file, null, 2) + '\n');
const svg = Object.keys(results).length > 0 ? `${base}.svg` : undefined;
if (svg) writeFileSync(svg, renderPlot(file, readBaseline(kBaselineFile)));
writeFileSync(`${base}.md`, markdownReport(file, { json: shown(`${base}.json`), svg: svg && shown(svg) }));

process.stdout.write('\n' + resultsTable(file) + '\n\n');
process.stderr.write(`written ${shown(`${base}.json`)}, ${shown(`${base}.md`)}${svg ? `, ${shown(svg)}` : ''}\n`);
// docs/bench.svg (the README's plot) follows full runs only: a quick look at one scenario must not replace it.
if (svg && full && Object.keys(failed).length === 0 && options.rounds >= kMinGateRounds) {
  copyFileSync(svg, kDocsPlot);
  process.stderr.write(`copied the plot to ${shown(kDocsPlot)}\n`);
} else if (svg) {
  process.stderr.write(`docs/bench.svg left as it is (not a full run of ≥ ${kMinGateRounds} rounds without failures); npm run bench:plot -- ${shown(`${base}.json`)} --docs copies this one\n`);
}
process.stderr.write(`next: npm run bench:gate (compares with bench/baseline.json)${Object.keys(failed).length > 0 ? `\nfailed: ${Object.keys(failed).join(', ')}` : ''}\n`);
process.exit(Object.keys(failed).length > 0 ? 1 : 0);
