import autocannon from 'autocannon';
import { summarize, type Summary } from './stats.ts';

export interface LoadOptions {
  readonly duration: number;
  readonly rounds: number;
  readonly connections: number;
  readonly pipelining: number;
  /** requests per second for the whole run (autocannon overallRate); undefined: as fast as the server answers */
  readonly rate?: number;
}

export interface Target {
  readonly name: 'fleetgate' | 'reference';
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** per-request headers (a new token each time), instead of fixed ones */
  readonly nextHeaders?: () => Record<string, string>;
  /** fleetgate only: its event-loop delay p99 (ms) since the last call, sampled around each round */
  readonly eventLoopP99?: () => Promise<number>;
}

export interface AbResult {
  readonly fleetgate: Summary;
  readonly reference: Summary;
  readonly ratio: number;
  readonly errors: number;
  /** fleetgate's event-loop delay p99 per round, ms */
  readonly eventLoopP99: Summary | undefined;
}

async function load(t: Target, seconds: number, o: LoadOptions) {
  const result = await autocannon({
    url: t.url, method: 'POST', headers: t.headers, body: t.body, duration: seconds, connections: o.connections, pipelining: o.pipelining, ...(o.rate && { overallRate: o.rate }),
    ...(t.nextHeaders && { requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, headers: { ...t.headers, ...t.nextHeaders!() } }) }] }),
  });
  return { rps: result.requests.average, bad: result.non2xx + result.errors + result.timeouts };
}

/**
 * The same load against fleetgate and its reference, alternating rounds so that noise on the shared machine hits both
 * alike, after a warm-up round each that is thrown away. Ratio of the medians.
 */
export async function abRun(label: string, targets: readonly [Target, Target], o: LoadOptions, progress: (line: string) => void): Promise<AbResult> {
  const rates: Record<string, number[]> = { fleetgate: [], reference: [] };
  const after: number[] = [];
  let errors = 0;
  for (const t of targets) await load(t, 1, o);
  for (let round = 1; round <= o.rounds; round++) {
    for (const t of targets) {
      await t.eventLoopP99?.();
      const { rps, bad } = await load(t, o.duration, o);
      if (t.eventLoopP99) after.push(await t.eventLoopP99());
      rates[t.name]!.push(rps);
      errors += t.name === 'fleetgate' ? bad : 0;
      progress(`${label} round ${round}/${o.rounds} ${t.name.padEnd(9)} ${Math.round(rps).toLocaleString('en-US')} req/s${bad ? ` (${bad} non-2xx/errors)` : ''}`);
    }
  }
  const fleetgate = summarize(rates.fleetgate!);
  const reference = summarize(rates.reference!);
  return { fleetgate, reference, ratio: fleetgate.median / reference.median, errors, eventLoopP99: after.length > 0 ? summarize(after) : undefined };
}
