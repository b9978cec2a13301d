import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { baselineFrom, parseBaseline, type Baseline } from './lib/gate.ts';
import { checkRounds, kBaselineFile, listResults, pickResults, shown, type Loaded } from './lib/results.ts';

/**
 * `npm run bench:baseline [-- --results <file.json> ...] [--last N] [--baseline <file>]`: rewrites bench/baseline.json,
 * on purpose: after a change that moves a ratio for a reason, or on a new machine. From the newest results file by
 * default; from several runs with `--results` repeated or `--last N` (the newest N files), each scenario's ratio then
 * being the median of the runs' (one noisy run moves it less). Keeps the hand-set per-scenario `margins`; says which
 * scenarios the new baseline no longer has. Commit the file.
 */
const { values } = parseArgs({
  options: {
    results: { type: 'string', multiple: true },
    last: { type: 'string' },
    baseline: { type: 'string', default: kBaselineFile },
  },
});

function stop(message: string): never {
  process.stderr.write(`bench:baseline: ${message}\n`);
  process.exit(2);
}

let runs: Loaded[];
if (values.last !== undefined) {
  const n = Number(values.last);
  if (!(Number.isInteger(n) && n >= 1)) stop(`--last must be a positive integer; got ${values.last}`);
  if (values.results) stop('give --results or --last, not both');
  const { all, unreadable } = listResults();
  for (const u of unreadable) process.stderr.write(`ignored ${u}\n`);
  if (all.length < n) stop(`--last ${n}: only ${all.length} results file(s) in bench/results/`);
  runs = all.slice(-n).map((l) => checkRounds(l, stop));
} else if (values.results) {
  runs = values.results.map((p) => pickResults(resolve(process.env.INIT_CWD ?? '.', p), stop));
} else {
  runs = [pickResults(undefined, stop)];
}
for (const run of runs) if (Object.keys(run.data.results).length === 0) stop(`${run.path} has no scenario results`);
const [first] = runs;
for (const run of runs.slice(1)) {
  const a = first!.data;
  const b = run.data;
  if (a.machine.cpu !== b.machine.cpu || a.machine.cores !== b.machine.cores) stop(`${run.path} is from another machine (${b.machine.cores} × ${b.machine.cpu}) than ${first!.path}`);
  const differ = (['duration', 'rounds', 'connections', 'pipelining'] as const).filter((k) => a.options[k] !== b.options[k]);
  if (differ.length > 0) process.stderr.write(`warning: ${run.path} ran with other load settings (${differ.join(', ')}) than ${first!.path}\n`);
}

let previous: Baseline | undefined;
if (existsSync(values.baseline!)) {
  try {
    previous = parseBaseline(readFileSync(values.baseline!, 'utf8'), values.baseline!);
  } catch (err) {
    process.stderr.write(`replacing an unreadable baseline: ${(err as Error).message}\n`);
  }
}
const next = baselineFrom(runs.map((r) => r.data), previous);
writeFileSync(values.baseline!, JSON.stringify(next, null, 2) + '\n');

const out = (line: string) => process.stdout.write(line + '\n');
out(`wrote ${shown(values.baseline!)} from ${runs.map((r) => shown(r.path)).join(', ')}`);
out(`  ${next.sha}${next.dirty ? ' + uncommitted changes' : ''}, ${next.date}, ${next.machine.cores} × ${next.machine.cpu}, Node ${next.machine.node}, ${next.options.rounds} rounds × ${next.options.duration} s${runs.length > 1 ? `; ratio = median of ${runs.length} runs` : ''}`);
for (const [name, e] of Object.entries(next.scenarios)) {
  const before = previous?.scenarios[name];
  out(`  ${name.padEnd(28)} ${e.ratio.toFixed(3)}${e.runs ? ` (runs ${e.runs.map((r) => r.toFixed(2)).join(', ')})` : ''}${before ? `  was ${before.ratio.toFixed(3)}` : '  new'}${next.margins?.[name] !== undefined ? `  margin ${next.margins[name]}` : ''}`);
}
const dropped = Object.keys(previous?.scenarios ?? {}).filter((n) => !(n in next.scenarios));
if (dropped.length > 0) out(`no longer in the baseline (not in these results): ${dropped.join(', ')}`);
if (next.dirty) out('warning: a run had uncommitted changes in src/ or bench/: commit them with the baseline');
