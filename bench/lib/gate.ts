import { existsSync, readFileSync } from 'node:fs';
import { roundRatios, unitOf, type Machine, type ResultsFile, type RunOptions } from './results.ts';
import { summarize } from './stats.ts';

/**
 * The regression gate, as pure functions: `compareWithBaseline` decides, `formatGate` prints, `baselineFrom` makes the
 * baseline from a results file, `parseBaseline` checks one. bench/gate.ts and bench/baseline.ts do the file work around
 * them (`readBaseline`, at the end, is the one helper here that reads a file).
 */

export const kDefaultMargin = 0.15;

/** bench/baseline.json: the ratios of one chosen run, committed; rewritten only by `npm run bench:baseline`. */
export interface Baseline {
  readonly sha: string;
  /** the run had uncommitted changes in src/ or bench/ */
  readonly dirty?: boolean;
  readonly date: string;
  readonly machine: Machine;
  readonly options: RunOptions;
  /** when made from several runs (bench:baseline --last N or several --results): which, oldest first */
  readonly from?: readonly { readonly sha: string; readonly date: string }[];
  /**
   * Margins for scenarios noisier than the default allows, e.g. { "tls-handshakes": 0.25 }. Edited by hand, kept when
   * bench:baseline rewrites the file; they take precedence over --margin.
   */
  readonly margins?: Readonly<Record<string, number>>;
  readonly scenarios: Readonly<Record<string, BaselineEntry>>;
}

export interface BaselineEntry {
  readonly ratio: number;
  /** 'lower': an amount (memory per connection), where a rising ratio is the regression */
  readonly better?: 'higher' | 'lower';
  readonly errors: number;
  /** for people reading the file: the medians behind the ratio */
  readonly fleetgate: number;
  readonly reference: number;
  readonly unit: string;
  /** when made from several runs: each run's ratio, oldest first (`ratio` is their median) */
  readonly runs?: readonly number[];
}

export type Verdict =
  | 'OK'
  | 'IMPROVED' // better than the baseline by more than the margin: passes; consider `npm run bench:baseline`
  | 'REGRESSED' // worse than the baseline by more than the margin: fails
  | 'ERRORS' // requests failed where the baseline had none: fails (a fast error is not a fast gateway)
  | 'FAILED' // the scenario threw in this run: fails
  | 'NOT RUN' // in the baseline, not in these results: listed
  | 'NEW'; // in these results, not in the baseline: listed

export interface GateRow {
  readonly scenario: string;
  readonly baseline: number | undefined;
  readonly now: number | undefined;
  /** relative change in the good direction: -0.2 is 20% worse, whichever way "worse" points for the scenario */
  readonly change: number | undefined;
  readonly margin: number;
  readonly verdict: Verdict;
  readonly detail: string;
}

export interface GateOutcome {
  readonly rows: readonly GateRow[];
  /** true when any row fails the gate */
  readonly failed: boolean;
  /** things a person should know that do not fail the gate (other machine, other load settings) */
  readonly warnings: readonly string[];
}

const kFailing: ReadonlySet<Verdict> = new Set(['REGRESSED', 'ERRORS', 'FAILED']);

/**
 * Compares each scenario's ratio with the baseline's. A higher-is-better ratio regresses when
 * now < baseline × (1 − margin); a lower-is-better one (better: 'lower') when baseline / now < 1 − margin.
 */
export function compareWithBaseline(baseline: Baseline, results: ResultsFile, o: { readonly margin: number }): GateOutcome {
  const rows: GateRow[] = [];
  const names = [...new Set([...Object.keys(baseline.scenarios), ...Object.keys(results.results), ...Object.keys(results.failed ?? {})])];
  for (const scenario of names) {
    const base = baseline.scenarios[scenario];
    const now = results.results[scenario];
    const margin = baseline.margins?.[scenario] ?? o.margin;
    const failure = results.failed?.[scenario];
    if (failure !== undefined) {
      rows.push({ scenario, baseline: base?.ratio, now: undefined, change: undefined, margin, verdict: base ? 'FAILED' : 'NEW', detail: failure.split('\n')[0]! });
      continue;
    }
    if (!base) {
      rows.push({ scenario, baseline: undefined, now: now!.ratio, change: undefined, margin, verdict: 'NEW', detail: 'not in the baseline' });
      continue;
    }
    if (!now) {
      const why = results.skipped?.[scenario];
      rows.push({ scenario, baseline: base.ratio, now: undefined, change: undefined, margin, verdict: 'NOT RUN', detail: why ? `skipped: ${why}` : 'not in these results' });
      continue;
    }
    const lower = (now.better ?? base.better) === 'lower';
    const change = lower ? base.ratio / now.ratio - 1 : now.ratio / base.ratio - 1;
    let verdict: Verdict = change < -margin ? 'REGRESSED' : change > margin ? 'IMPROVED' : 'OK';
    // The paired rounds' ratios show whether a change is consistent or one noisy round.
    const rounds = roundRatios(now);
    let detail = [rounds && rounds.length > 1 ? `rounds ${Math.min(...rounds).toFixed(2)}–${Math.max(...rounds).toFixed(2)}` : '', lower ? 'lower is better' : ''].filter(Boolean).join('; ');
    if (now.errors > 0 && base.errors === 0) {
      verdict = 'ERRORS';
      detail = `${now.errors} failed requests/connections (baseline: none)`;
    } else if (!Number.isFinite(change)) {
      verdict = 'REGRESSED';
      detail = `ratio ${now.ratio}`;
    }
    rows.push({ scenario, baseline: base.ratio, now: now.ratio, change, margin, verdict, detail });
  }

  const warnings: string[] = [];
  const bm = baseline.machine;
  const rm = results.machine;
  if (bm.cpu !== rm.cpu || bm.cores !== rm.cores) warnings.push(`the baseline was measured on ${bm.cores} × ${bm.cpu}, these results on ${rm.cores} × ${rm.cpu}: ratios travel better than rates, but not perfectly`);
  const differ = (['duration', 'connections', 'pipelining'] as const).filter((k) => baseline.options[k] !== results.options[k]);
  if (differ.length > 0) warnings.push(`other load settings than the baseline's: ${differ.map((k) => `${k} ${results.options[k]} (baseline ${baseline.options[k]})`).join(', ')}`);
  return { rows, failed: rows.some((r) => kFailing.has(r.verdict)), warnings };
}

const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(1)}%`;

/** The verdict table, aligned for a terminal. */
export function formatGate(outcome: GateOutcome): string {
  const header = ['scenario', 'baseline', 'now', 'change', 'margin', 'verdict', ''];
  const cells = outcome.rows.map((r) => [
    r.scenario,
    r.baseline === undefined ? '–' : r.baseline.toFixed(3),
    r.now === undefined ? '–' : r.now.toFixed(3),
    r.change === undefined || !Number.isFinite(r.change) ? '–' : signed(r.change),
    `${(r.margin * 100).toFixed(0)}%`,
    r.verdict,
    r.detail,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 || i >= 5 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ').trimEnd();
  const failing = outcome.rows.filter((r) => kFailing.has(r.verdict)).map((r) => r.scenario);
  const compared = outcome.rows.filter((r) => r.now !== undefined && r.baseline !== undefined).length;
  return [
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...cells.map(line),
    '',
    ...outcome.warnings.map((w) => `warning: ${w}`),
    failing.length > 0
      ? `FAIL: ${failing.join(', ')}${outcome.rows.some((r) => r.verdict === 'REGRESSED') ? '\n(on a shared machine one run can be off by 20%: before acting on REGRESSED, run it again, npm run bench -- --scenario <name>, then npm run bench:gate)' : ''}`
      : compared === 0 ? 'PASS, but no scenario was in both the baseline and the results' : `PASS: ${compared} scenario(s) within their margin`,
  ].join('\n');
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

/**
 * The baseline made from one results file, or from several runs (each scenario's ratio is then the median of the runs'
 * ratios: one noisy run moves it less); `previous` hands on its hand-set per-scenario margins. The machine, options,
 * sha and date are the newest run's.
 */
export function baselineFrom(runs: readonly ResultsFile[], previous?: Baseline): Baseline {
  if (runs.length === 0) throw new Error('baselineFrom: no results');
  const sorted = [...runs].sort((a, b) => Date.parse(a.date) - Date.parse(b.date));
  const newest = sorted.at(-1)!;
  const names = [...new Set(sorted.flatMap((r) => Object.keys(r.results)))];
  const scenarios: Record<string, BaselineEntry> = {};
  for (const name of names) {
    const rs = sorted.flatMap((run) => (run.results[name] ? [run.results[name]] : []));
    const last = rs.at(-1)!;
    scenarios[name] = {
      ratio: round(median(rs.map((r) => r.ratio)), 4), ...(rs.some((r) => r.better === 'lower') && { better: 'lower' as const }),
      errors: Math.max(...rs.map((r) => r.errors)),
      fleetgate: round(median(rs.map((r) => r.fleetgate.median)), 1), reference: round(median(rs.map((r) => r.reference.median)), 1), unit: unitOf(name, last),
      ...(rs.length > 1 && { runs: rs.map((r) => round(r.ratio, 4)) }),
    };
  }
  return {
    sha: newest.sha, ...(sorted.some((r) => r.dirty) && { dirty: true }), date: newest.date, machine: newest.machine, options: newest.options,
    ...(sorted.length > 1 && { from: sorted.map((r) => ({ sha: r.sha, date: r.date })) }),
    ...(previous?.margins && Object.keys(previous.margins).length > 0 && { margins: previous.margins }),
    scenarios,
  };
}

const median = (values: readonly number[]) => summarize(values).median;

/** A baseline file as read from disk, checked enough to compare with; throws an Error that says what is wrong. */
export function parseBaseline(text: string, path: string): Baseline {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not JSON (${(err as Error).message})`);
  }
  const b = raw as Partial<Baseline>;
  if (typeof b !== 'object' || b === null || typeof b.scenarios !== 'object' || b.scenarios === null) throw new Error(`${path}: no "scenarios": not a baseline file`);
  for (const [name, e] of Object.entries(b.scenarios)) if (!Number.isFinite(e?.ratio)) throw new Error(`${path}: scenario ${name} has no ratio`);
  return { sha: '?', date: '?', options: { duration: NaN, rounds: NaN, connections: NaN, pipelining: NaN }, ...b, machine: { cpu: 'unknown', cores: 0, node: 'unknown', ...b.machine } } as Baseline;
}

/** The baseline at `path` for display (the plot's markers): undefined when there is none or it cannot be read. */
export function readBaseline(path: string): Baseline | undefined {
  try {
    return existsSync(path) ? parseBaseline(readFileSync(path, 'utf8'), path) : undefined;
  } catch {
    return undefined;
  }
}
