import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { compareWithBaseline, formatGate, kDefaultMargin, parseBaseline } from './lib/gate.ts';
import { gitSha } from './lib/git.ts';
import { kBaselineFile, pickResults, shown } from './lib/results.ts';

/**
 * `npm run bench:gate [-- --results <file.json>] [--margin 0.15] [--baseline <file>]`: compares the ratios of a results
 * file (default: the newest in bench/results/, by the date inside it) with bench/baseline.json, prints a verdict per
 * scenario, and exits 1 when a ratio is more than the margin worse than the baseline's, a scenario that has a baseline
 * failed to run, or requests failed where the baseline had none; 2 when it cannot compare (no results, no baseline,
 * fewer than 3 rounds). It does not run the bench: `npm run bench && npm run bench:gate`.
 */
const { values } = parseArgs({
  options: {
    results: { type: 'string' },
    baseline: { type: 'string', default: kBaselineFile },
    margin: { type: 'string', default: String(kDefaultMargin) },
  },
});

function stop(message: string): never {
  process.stderr.write(`bench:gate: ${message}\n`);
  process.exit(2);
}

const margin = Number(values.margin);
if (!(margin >= 0 && margin < 1)) stop(`--margin must be a fraction in [0, 1), e.g. 0.15; got ${values.margin}`);
const results = pickResults(values.results && resolve(process.env.INIT_CWD ?? '.', values.results), stop);
if (!existsSync(values.baseline!)) stop(`no baseline at ${values.baseline}: make one with npm run bench, then npm run bench:baseline`);
const baseline = (() => {
  try {
    return parseBaseline(readFileSync(values.baseline!, 'utf8'), values.baseline!);
  } catch (err) {
    return stop((err as Error).message);
  }
})();

const r = results.data;
process.stdout.write(`results:  ${shown(results.path)} (${r.sha}${r.dirty ? ' + changes' : ''}, ${r.date}, ${r.options.rounds} × ${r.options.duration} s)\n`);
process.stdout.write(`baseline: ${shown(values.baseline!)} (${baseline.sha}, ${baseline.date}, ${baseline.options.rounds} × ${baseline.options.duration} s${baseline.from ? `, median of ${baseline.from.length} runs` : ''})\n`);
const head = gitSha();
if (head && head !== r.sha) process.stdout.write(`note: these results are from ${r.sha}, the checkout is at ${head}: run npm run bench first to gate this commit\n`);
process.stdout.write('\n');
const outcome = compareWithBaseline(baseline, r, { margin });
process.stdout.write(formatGate(outcome) + '\n');
process.exit(outcome.failed ? 1 : 0);
