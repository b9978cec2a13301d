import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { describeHttpPublish, httpPublish } from './scenarios/http-publish.ts';

/**
 * `npm run bench [-- --duration 5 --rounds 3 --connections 100 --pipelining 10]`: runs each scenario against fleetgate
 * and its reference in the same run, prints a Markdown table, and writes bench/results/<git sha>.json.
 */
const { values } = parseArgs({
  options: {
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

const results = [await httpPublish('senml', options, progress), await httpPublish('raw', options, progress)];

const table = [
  '| scenario | fleetgate (median ± spread) | reference (median ± spread) | ratio | errors |',
  '|---|---|---|---|---|',
  ...results.flatMap(describeHttpPublish),
];
process.stdout.write('\n' + table.join('\n') + '\n');
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `${sha}.json`), JSON.stringify({ sha, date: new Date().toISOString(), machine, options, results }, null, 2) + '\n');
progress(`written bench/results/${sha}.json`);
