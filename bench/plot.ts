import { copyFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readBaseline } from './lib/gate.ts';
import { renderPlot } from './lib/plot.ts';
import { kBaselineFile, kDocsPlot, loadResults, newestResults, shown, type Loaded } from './lib/results.ts';

/**
 * `npm run bench:plot [-- <results.json>] [--out <file.svg>] [--docs]`: draws a results file (default: the newest in
 * bench/results/) as an SVG beside it (<name>.svg), with bench/baseline.json's ratios marked. `--docs` also copies it
 * to docs/bench.svg, the plot the README embeds (a full `npm run bench` does that by itself).
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { out: { type: 'string' }, docs: { type: 'boolean', default: false } },
});

function stop(message: string): never {
  process.stderr.write(`bench:plot: ${message}\n`);
  process.exit(2);
}

const here = (p: string) => resolve(process.env.INIT_CWD ?? '.', p);
let loaded: Loaded;
if (positionals[0]) {
  try {
    loaded = loadResults(here(positionals[0]));
  } catch (err) {
    stop((err as Error).message);
  }
} else {
  const { newest } = newestResults();
  if (!newest) stop('no results in bench/results/: run npm run bench first, or name a results file');
  loaded = newest;
}
for (const d of loaded.dropped) process.stderr.write(`ignored in ${loaded.path}: ${d}\n`);
if (Object.keys(loaded.data.results).length === 0) stop(`${loaded.path} has no scenario results to plot`);
const out = values.out ? here(values.out) : loaded.path.replace(/\.json$/, '') + '.svg';
writeFileSync(out, renderPlot(loaded.data, readBaseline(kBaselineFile)));
process.stdout.write(`wrote ${shown(out)}\n`);
if (values.docs) {
  copyFileSync(out, kDocsPlot);
  process.stdout.write(`copied to ${shown(kDocsPlot)}\n`);
}
