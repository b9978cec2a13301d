import autocannon from 'autocannon';
import { startFleetgate, startReference, type Server } from '../lib/servers.ts';
import { fmt, pct, summarize, type Summary } from '../lib/stats.ts';

export interface ScenarioOptions {
  readonly duration: number;
  readonly rounds: number;
  readonly connections: number;
  readonly pipelining: number;
}

export type Variant = 'senml' | 'raw';

export interface HttpPublishResult {
  readonly scenario: `http-publish-${Variant}`;
  readonly reference: Summary;
  readonly fleetgate: Summary;
  readonly ratio: number;
  readonly errors: number;
}

const kBody = '[{"bn":"some-base-name:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2},{"n":"current","t":-4,"v":1.3}]';

async function load(url: string, headers: Record<string, string>, seconds: number, o: ScenarioOptions) {
  const result = await autocannon({ url, method: 'POST', headers, body: kBody, duration: seconds, connections: o.connections, pipelining: o.pipelining });
  const bad = result.non2xx + result.errors + result.timeouts;
  return { rps: result.requests.average, bad };
}

/**
 * HTTP publish with a cached secret (the registry view answers in memory), against a bare uWS handler that reads the
 * body and answers 202. `senml`: a senml+json channel (validation + normalisation + re-encoding); `raw`: a raw channel
 * (no payload work), which isolates the gateway's own cost. Rounds alternate between the two servers, so noise from
 * the shared machine hits both alike; the ratio is of the medians.
 */
export async function httpPublish(variant: Variant, o: ScenarioOptions, progress: (line: string) => void): Promise<HttpPublishResult> {
  const scenario = `http-publish-${variant}` as const;
  const reference = await startReference();
  const gateway = await startFleetgate();
  const targets: [string, Server, string, Record<string, string>][] = [
    ['reference', reference, '/http/x', { 'content-type': 'application/senml+json' }],
    variant === 'senml'
      ? ['fleetgate', gateway, `/http/${gateway.topic}`, { 'content-type': 'application/senml+json', authorization: `Client ${gateway.secret}` }]
      : ['fleetgate', gateway, `/http/${gateway.rawTopic}`, { authorization: `Client ${gateway.secret}` }],
  ];
  const rates: Record<string, number[]> = { reference: [], fleetgate: [] };
  let errors = 0;
  try {
    for (const [, server, path, headers] of targets) await load(`http://127.0.0.1:${server.port}${path}`, headers, 1, o); // warm-up, thrown away
    for (let round = 1; round <= o.rounds; round++) {
      for (const [name, server, path, headers] of targets) {
        const { rps, bad } = await load(`http://127.0.0.1:${server.port}${path}`, headers, o.duration, o);
        rates[name]!.push(rps);
        errors += bad;
        progress(`${scenario} round ${round}/${o.rounds} ${name.padEnd(9)} ${fmt(rps)} req/s${bad ? ` (${bad} non-2xx/errors)` : ''}`);
      }
    }
  } finally {
    await Promise.all([reference.stop(), gateway.stop()]);
  }
  const ref = summarize(rates.reference!);
  const fg = summarize(rates.fleetgate!);
  return { scenario, reference: ref, fleetgate: fg, ratio: fg.median / ref.median, errors };
}

export function describeHttpPublish(r: HttpPublishResult): string[] {
  return [
    `| ${r.scenario} | ${fmt(r.fleetgate.median)} req/s ±${pct(r.fleetgate.spread)} | ${fmt(r.reference.median)} req/s ±${pct(r.reference.spread)} | ${r.ratio.toFixed(2)} | ${r.errors} |`,
  ];
}
