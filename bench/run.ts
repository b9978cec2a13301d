import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AbResult } from './lib/ab.ts';
import { startFleetgate, startMosquitto, startReference } from './lib/servers.ts';
import { fmt, pct } from './lib/stats.ts';
import { jwtCached, jwtCold } from './scenarios/auth.ts';
import { httpPublish } from './scenarios/http-publish.ts';
import { mqttFanout } from './scenarios/mqtt-fanout.ts';
import { httpsPublish, mtlsPublish, startTlsGateways, tlsHandshakes } from './scenarios/tls.ts';

/**
 * `npm run bench [-- --scenario http-publish-senml --duration 5 --rounds 3 --connections 100 --pipelining 10]`: runs
 * each scenario against fleetgate and its reference in the same run, prints a Markdown table, and writes
 * bench/results/<git sha>.json.
 */
const { values } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '100' },
    pipelining: { type: 'string', default: '10' },
  },
});
const options = { duration: Number(values.duration), rounds: Number(values.rounds), connections: Number(values.connections), pipelining: Number(values.pipelining) };
const progress = (line: string) => process.stderr.write(line + '\n');

const sha = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
progress(`fleetgate bench @ ${sha} on ${machine.cores} × ${machine.cpu}, Node ${machine.node}; ${JSON.stringify(options)}`);

type Fleet = Awaited<ReturnType<typeof startFleetgate>>;
type Refs = {
  http: Awaited<ReturnType<typeof startReference>>;
  mosquitto: Awaited<ReturnType<typeof startMosquitto>> | undefined;
  tls: Awaited<ReturnType<typeof startTlsGateways>> | undefined;
};
const scenarios = {
  'http-publish-senml': (g, r) => httpPublish('senml', g, r.http, options, progress),
  'http-publish-raw': (g, r) => httpPublish('raw', g, r.http, options, progress),
  'http-publish-jwt-cached': (g, r) => jwtCached(g, r.http, options, progress),
  'http-publish-jwt-cold': (g, r) => jwtCold(g, r.http, options, progress),
  'http-publish-jwt-cold-5000': (g, r) => jwtCold(g, r.http, options, progress, 5000),
  'mqtt-fanout-10x10-qos0': (g, r) => mqttFanout({ publishers: 10, subscribers: 10, qos: 0 }, g, r.mosquitto!, options, progress),
  'mqtt-fanout-1x100-qos0': (g, r) => mqttFanout({ publishers: 1, subscribers: 100, qos: 0 }, g, r.mosquitto!, options, progress),
  'mqtt-fanout-10x10-qos1': (g, r) => mqttFanout({ publishers: 10, subscribers: 10, qos: 1 }, g, r.mosquitto!, options, progress),
  // Each side of these is fleetgate: `reference` is the faster transport (see scenarios/tls.ts).
  'https-publish': (_g, r) => httpsPublish(r.tls!, options, progress),
  'mtls-publish-header': (_g, r) => mtlsPublish('header', r.tls!, options, progress),
  'mtls-publish-cert': (_g, r) => mtlsPublish('cert', r.tls!, options, progress),
  'tls-handshakes': (_g, r) => tlsHandshakes(r.tls!, options, progress),
} satisfies Record<string, (g: Fleet, r: Refs) => Promise<AbResult>>;
const wanted = (values.scenario ?? Object.keys(scenarios)) as (keyof typeof scenarios)[];
for (const name of wanted) if (!(name in scenarios)) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);

// mosquitto only when an MQTT scenario runs: the HTTP scenarios need nothing beyond npm. The TLS gateways (and their
// PKI, made by certs/Makefile: needs make + openssl) only when a TLS scenario runs; the mutual one only when needed.
const tls = wanted.some((n) => n.startsWith('https-') || n.startsWith('mtls-') || n.startsWith('tls-'));
const mutual = wanted.some((n) => n.startsWith('mtls-') || n.startsWith('tls-'));
const refs: Refs = {
  http: await startReference(),
  mosquitto: wanted.some((n) => n.startsWith('mqtt-')) ? await startMosquitto() : undefined,
  tls: tls ? await startTlsGateways(mutual) : undefined,
};
const gateway = await startFleetgate();
const results: Record<string, AbResult> = {};
try {
  for (const name of wanted) results[name] = await scenarios[name](gateway, refs);
} finally {
  await Promise.all([refs.http.stop(), refs.mosquitto?.stop(), refs.tls?.stop(), gateway.stop()]);
}

const table = [
  '| scenario | fleetgate (median ± spread) | reference (median ± spread) | ratio | errors | event-loop p99 | latency p99 fleetgate / reference | notes |',
  '|---|---|---|---|---|---|---|---|',
  ...Object.entries(results).map(([name, r]) =>
    `| ${name} | ${fmt(r.fleetgate.median)}/s ±${pct(r.fleetgate.spread)} | ${fmt(r.reference.median)}/s ±${pct(r.reference.spread)} | ${r.ratio.toFixed(2)} | ${r.errors} | ${r.eventLoopP99 ? `${r.eventLoopP99.median.toFixed(1)} ms` : ''} | ${'latency' in r ? `${(r.latency as { fleetgate: number }).fleetgate.toFixed(1)} / ${(r.latency as { reference: number }).reference.toFixed(1)} ms` : ''} | ${'note' in r ? r.note : r.cpuPerRequestUs ? `server CPU per request ${r.cpuPerRequestUs.fleetgate.toFixed(1)} / ${r.cpuPerRequestUs.reference.toFixed(1)} µs` : ''} |`),
];
process.stdout.write('\n' + table.join('\n') + '\n');
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `${sha}.json`), JSON.stringify({ sha, date: new Date().toISOString(), machine, options, results }, null, 2) + '\n');
progress(`written bench/results/${sha}.json`);
