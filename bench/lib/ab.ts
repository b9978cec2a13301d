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
  /** what the progress lines call it, when both sides are fleetgate (HTTPS vs HTTP) */
  readonly label?: string;
  /** for an https:// url: CA, client certificate and key (autocannon's tlsOptions; it never verifies the server) */
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** per-request headers (a new token each time), instead of fixed ones */
  readonly nextHeaders?: () => Record<string, string>;
  /** fleetgate only: its event-loop delay p99 (ms) since the last call, sampled around each round */
  readonly eventLoopP99?: () => Promise<number>;
  /**
   * CPU seconds used so far by the process that serves this target, read around each round: its CPU per request. When
   * the load generator shares the cores, the rate shows the whole machine's cost, this the server's alone.
   */
  readonly cpuSeconds?: () => number;
}

/**
 * What every scenario returns: bench/run.ts stores it under the scenario's name in bench/results/<timestamp>.json, and
 * the report, the plot and the gate read it from there. A scenario may add fields of its own (they are kept in the
 * JSON); the optional ones below are the ones the report understands.
 */
export interface AbResult {
  /** fleetgate's rate (or amount, see `better`) per round */
  readonly fleetgate: Summary;
  /** the reference's, measured in the same run, alternating rounds */
  readonly reference: Summary;
  /** fleetgate.median / reference.median: what bench:gate compares with bench/baseline.json */
  readonly ratio: number;
  /** failed requests, connections or deliveries over all rounds */
  readonly errors: number;
  /** fleetgate's event-loop delay p99 per round, ms */
  readonly eventLoopP99: Summary | undefined;
  /** median server CPU per request, µs, when both targets give cpuSeconds */
  readonly cpuPerRequestUs?: { readonly fleetgate: number; readonly reference: number };
  /** median latency p99, ms, fleetgate / reference */
  readonly latency?: { readonly fleetgate: number; readonly reference: number };
  /** the unit of fleetgate/reference, e.g. 'req/s', 'deliveries/s', 'KiB/connection'; default: the scenario entry's in run.ts */
  readonly unit?: string;
  /**
   * 'higher' (default): a rate, a larger ratio is better. 'lower': an amount such as memory per connection, where the
   * gate counts a *rising* ratio as the regression.
   */
  readonly better?: 'higher' | 'lower';
  /** fan-out scenarios: the shape, for the plot of throughput against subscribers (else read from the name, `<P>x<Q>`) */
  readonly publishers?: number;
  readonly subscribers?: number;
  /** one line for the report's notes column */
  readonly note?: string;
}

async function load(t: Target, seconds: number, o: LoadOptions) {
  const result = await autocannon({
    url: t.url, method: 'POST', headers: t.headers, body: t.body, duration: seconds, connections: o.connections, pipelining: o.pipelining, ...(o.rate && { overallRate: o.rate }), ...(t.tls && { tlsOptions: t.tls }),
    ...(t.nextHeaders && { requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, headers: { ...t.headers, ...t.nextHeaders!() } }) }] }),
  });
  return { rps: result.requests.average, requests: result.requests.total, bad: result.non2xx + result.errors + result.timeouts };
}

/**
 * The same load against fleetgate and its reference, alternating rounds so that noise on the shared machine hits both
 * alike, after a warm-up round each that is thrown away. Ratio of the medians.
 */
export async function abRun(label: string, targets: readonly [Target, Target], o: LoadOptions, progress: (line: string) => void): Promise<AbResult> {
  const rates: Record<string, number[]> = { fleetgate: [], reference: [] };
  const cpu: Record<string, number[]> = { fleetgate: [], reference: [] };
  const after: number[] = [];
  let errors = 0;
  for (const t of targets) await load(t, 1, o);
  for (let round = 1; round <= o.rounds; round++) {
    for (const t of targets) {
      await t.eventLoopP99?.();
      const cpu0 = t.cpuSeconds?.();
      const { rps, requests, bad } = await load(t, o.duration, o);
      const us = t.cpuSeconds ? ((t.cpuSeconds() - cpu0!) / Math.max(requests, 1)) * 1e6 : undefined;
      if (t.eventLoopP99) after.push(await t.eventLoopP99());
      rates[t.name]!.push(rps);
      if (us !== undefined) cpu[t.name]!.push(us);
      // Both sides count when both are fleetgate; a bare reference never fails.
      errors += bad;
      progress(`${label} round ${round}/${o.rounds} ${(t.label ?? t.name).padEnd(9)} ${Math.round(rps).toLocaleString('en-US')} req/s${us !== undefined ? `, server ${us.toFixed(1)} µs CPU each` : ''}${bad ? ` (${bad} non-2xx/errors)` : ''}`);
    }
  }
  const fleetgate = summarize(rates.fleetgate!);
  const reference = summarize(rates.reference!);
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors, eventLoopP99: after.length > 0 ? summarize(after) : undefined,
    ...(cpu.fleetgate!.length > 0 && cpu.reference!.length > 0 && { cpuPerRequestUs: { fleetgate: summarize(cpu.fleetgate!).median, reference: summarize(cpu.reference!).median } }),
  };
}
