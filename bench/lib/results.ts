import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, relative } from 'node:path';
import type { AbResult } from './ab.ts';
import type { Summary } from './stats.ts';

/**
 * The results file `npm run bench` writes (bench/results/<timestamp>.json), and how the report, the plot, the gate
 * and the baseline read it back, including the files written before this format (bench/results/<sha>.json, whose
 * `results` was an array of `{ scenario, ... }` in the first ones).
 */

export const kResultsDir = join(import.meta.dirname, '../results');
export const kBaselineFile = join(import.meta.dirname, '../baseline.json');
/** the plot the README embeds: rewritten by every full `npm run bench` */
export const kDocsPlot = join(import.meta.dirname, '../../docs/bench.svg');

/** bench:gate and bench:baseline refuse results of fewer rounds: two rounds have no median worth the name */
export const kMinGateRounds = 3;

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly os?: string;
  readonly memoryGiB?: number;
  /** load average (1, 5, 15 min) when the run started: a busy shared machine shows here */
  readonly loadavg?: readonly number[];
  /** versions of the references, e.g. { mosquitto: '2.0.11' } */
  readonly references?: Readonly<Record<string, string>>;
}

export interface RunOptions {
  readonly duration: number;
  readonly rounds: number;
  readonly connections: number;
  readonly pipelining: number;
}

/** One scenario's stored result: an AbResult (bench/lib/ab.ts) plus whatever the run added; older files may lack the event-loop row. */
export interface ScenarioResult extends Omit<AbResult, 'eventLoopP99'> {
  readonly eventLoopP99?: Summary | undefined;
  /** seconds the scenario took, setup included */
  readonly seconds?: number;
}

export interface ResultsFile {
  /** 2: this format; absent: the <sha>.json files from before */
  readonly format?: number;
  readonly sha: string;
  /** src/, bench/ or the package files differed from `sha` when the run started */
  readonly dirty?: boolean;
  /** ISO 8601: when the run finished */
  readonly date: string;
  readonly machine: Machine;
  readonly options: RunOptions;
  /** true when no --scenario was given: every registered scenario was asked for */
  readonly full?: boolean;
  readonly results: Readonly<Record<string, ScenarioResult>>;
  /** scenarios not run, and why (e.g. no mosquitto installed) */
  readonly skipped?: Readonly<Record<string, string>>;
  /** scenarios that threw, and the error */
  readonly failed?: Readonly<Record<string, string>>;
}

export interface Loaded {
  readonly path: string;
  readonly data: ResultsFile;
  /** entries of the file that were left out, and why */
  readonly dropped: readonly string[];
}

const isSummary = (v: unknown): v is Summary => typeof v === 'object' && v !== null && Number.isFinite((v as Summary).median);

/** Reads one results file, old or new; throws an Error that says what is wrong with it. */
export function loadResults(path: string): Loaded {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: not JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || !('results' in raw)) throw new Error(`${path}: no "results": not a bench results file`);
  const file = raw as Record<string, unknown>;
  // The first files kept an array of { scenario, ... }; later ones a record keyed by scenario name.
  const entries: [string, unknown][] = Array.isArray(file.results)
    ? (file.results as unknown[]).map((r, i) => [String((r as { scenario?: unknown })?.scenario ?? `#${i}`), r])
    : Object.entries(file.results as Record<string, unknown>);
  const results: Record<string, ScenarioResult> = {};
  const dropped: string[] = [];
  for (const [name, r] of entries) {
    const ok = typeof r === 'object' && r !== null && isSummary((r as ScenarioResult).fleetgate) && isSummary((r as ScenarioResult).reference) && Number.isFinite((r as ScenarioResult).ratio);
    if (ok) results[name] = { ...(r as ScenarioResult), errors: Number((r as Partial<ScenarioResult>).errors ?? 0) };
    else dropped.push(`${name}: no fleetgate/reference medians and ratio`);
  }
  const machine = (file.machine ?? {}) as Partial<Machine>;
  const options = (file.options ?? {}) as Partial<RunOptions>;
  const date = typeof file.date === 'string' && !Number.isNaN(Date.parse(file.date)) ? file.date : statSync(path).mtime.toISOString();
  return {
    path,
    dropped,
    data: {
      ...(file as object),
      sha: typeof file.sha === 'string' ? file.sha : basename(path, '.json'),
      date,
      machine: { ...machine, cpu: machine.cpu ?? 'unknown', cores: machine.cores ?? 0, node: machine.node ?? 'unknown' },
      options: { duration: options.duration ?? NaN, rounds: options.rounds ?? NaN, connections: options.connections ?? NaN, pipelining: options.pipelining ?? NaN },
      results,
    },
  };
}

/**
 * Every results file in `dir`, oldest first by the date inside it (the old files are named by sha, so names do not
 * sort), and the files that could not be read, with why.
 */
export function listResults(dir = kResultsDir): { all: Loaded[]; unreadable: string[] } {
  const unreadable: string[] = [];
  const all: Loaded[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return { all, unreadable };
  }
  for (const name of names) {
    try {
      all.push(loadResults(join(dir, name)));
    } catch (err) {
      unreadable.push((err as Error).message);
    }
  }
  all.sort((a, b) => Date.parse(a.data.date) - Date.parse(b.data.date));
  return { all, unreadable };
}

/** The newest results file in `dir` (undefined when there is none), and the files that could not be read. */
export function newestResults(dir = kResultsDir): { newest: Loaded | undefined; unreadable: string[] } {
  const { all, unreadable } = listResults(dir);
  return { newest: all.at(-1), unreadable };
}

/** `20261123T172632Z-e1ec836`: sorts by time, says which commit. */
export function resultsName(date: Date, sha: string): string {
  return `${date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${sha}`;
}

/** The unit of a scenario's numbers: stored by run.ts since format 2; for older files, what those scenarios measured. */
export function unitOf(name: string, r: ScenarioResult): string {
  if (r.unit) return r.unit;
  if (name.startsWith('mqtt-fanout-')) return 'deliveries/s';
  if (name === 'tls-handshakes') return 'handshakes/s';
  return 'req/s';
}

/** Ratios of the rounds paired in order (abRun alternates the two sides within each round), when both kept them. */
export function roundRatios(r: ScenarioResult): number[] | undefined {
  const f = r.fleetgate.values;
  const ref = r.reference.values;
  if (!f || !ref || f.length !== ref.length || f.length === 0) return undefined;
  return f.map((v, i) => v / ref[i]!);
}

/**
 * bench:gate's and bench:baseline's choice of results: the file given, else the newest in bench/results/. Refuses
 * (through `fail`) results of fewer than 3 rounds. Says on stderr which files or entries it could not read.
 */
export function pickResults(path: string | undefined, fail: (message: string) => never): Loaded {
  let loaded: Loaded;
  if (path) {
    try {
      loaded = loadResults(path);
    } catch (err) {
      return fail((err as Error).message);
    }
  } else {
    const { newest, unreadable } = newestResults();
    for (const u of unreadable) process.stderr.write(`ignored ${u}\n`);
    if (!newest) return fail('no results in bench/results/: run npm run bench first (or give --results <file.json>)');
    loaded = newest;
  }
  return checkRounds(loaded, fail);
}

/** Says on stderr what of the file was left out; refuses (through `fail`) results of fewer than 3 rounds. */
export function checkRounds(loaded: Loaded, fail: (message: string) => never): Loaded {
  for (const d of loaded.dropped) process.stderr.write(`ignored in ${loaded.path}: ${d}\n`);
  if (!(loaded.data.options.rounds >= kMinGateRounds)) {
    return fail(`${loaded.path} has ${loaded.data.options.rounds} round(s); comparing needs at least ${kMinGateRounds}: run npm run bench -- --rounds ${kMinGateRounds} (the default)`);
  }
  return loaded;
}

/** A path as a person wants to read it: relative to the working directory when inside it. */
export function shown(path: string): string {
  const r = relative(process.cwd(), path);
  return r.startsWith('..') || isAbsolute(r) ? path : r;
}
