import { roundRatios, unitOf, type ResultsFile, type ScenarioResult } from './results.ts';
import { fmt, pct } from './stats.ts';
import { meetsTarget, targetOf } from './targets.ts';

/** 213,926 for rates; 3 significant digits below 100 (KiB per connection, µs). */
export function fmtValue(n: number): string {
  if (!Number.isFinite(n)) return '–';
  return Math.abs(n) >= 100 ? fmt(n) : Number(n.toPrecision(3)).toString();
}

export const fmtRatio = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–');

function ratioCell(r: ScenarioResult): string {
  const rounds = roundRatios(r);
  if (!rounds || rounds.length < 2) return fmtRatio(r.ratio);
  return `${fmtRatio(r.ratio)} (rounds ${fmtRatio(Math.min(...rounds))}–${fmtRatio(Math.max(...rounds))})`;
}

function notes(name: string, r: ScenarioResult): string {
  const out: string[] = [];
  const target = targetOf(name);
  const met = target && meetsTarget(target, r);
  if (target && met !== undefined) out.push(`target ${target.text}: ${met ? 'met' : '**missed**'}`);
  if (r.better === 'lower') out.push('lower is better');
  if (r.latency) out.push(`latency p99 ${r.latency.fleetgate.toFixed(1)} / ${r.latency.reference.toFixed(1)} ms`);
  if (r.cpuPerRequestUs) out.push(`server CPU per request ${r.cpuPerRequestUs.fleetgate.toFixed(1)} / ${r.cpuPerRequestUs.reference.toFixed(1)} µs`);
  if (r.note) out.push(r.note);
  return out.join('; ').replaceAll('|', '\\|');
}

/** The results as a Markdown table: printed at the end of `npm run bench` and the heart of the report. */
export function resultsTable(results: ResultsFile): string {
  const rows = Object.entries(results.results).map(([name, r]) => {
    const unit = unitOf(name, r);
    return `| ${name} | ${fmtValue(r.fleetgate.median)} ${unit} ±${pct(r.fleetgate.spread)} | ${fmtValue(r.reference.median)} ${unit} ±${pct(r.reference.spread)} | ${ratioCell(r)} | ${r.errors} | ${r.eventLoopP99 ? `${r.eventLoopP99.median.toFixed(1)} ms` : ''} | ${notes(name, r)} |`;
  });
  const missing = [
    ...Object.entries(results.failed ?? {}).map(([name, why]) => `| ${name} | failed: ${why.replaceAll('|', '\\|').split('\n')[0]} | | | | | |`),
    ...Object.entries(results.skipped ?? {}).map(([name, why]) => `| ${name} | skipped: ${why.replaceAll('|', '\\|')} | | | | | |`),
  ];
  return [
    '| scenario | fleetgate (median ± spread) | reference (median ± spread) | ratio | errors | event-loop p99 | notes |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    ...missing,
  ].join('\n');
}

export function machineLine(results: ResultsFile): string {
  const m = results.machine;
  return [
    `${m.cores} × ${m.cpu}`,
    m.memoryGiB ? `${m.memoryGiB} GiB` : undefined,
    m.os,
    `Node ${m.node}`,
    m.loadavg ? `load average at start ${m.loadavg.map((l) => l.toFixed(2)).join(' ')}` : undefined,
    m.references && Object.keys(m.references).length > 0 ? Object.entries(m.references).map(([k, v]) => `${k} ${v}`).join(', ') : undefined,
  ].filter(Boolean).join(', ');
}

/** The Markdown report written beside the JSON: what ran, where, and the table. */
export function markdownReport(results: ResultsFile, files: { json: string; svg?: string | undefined }): string {
  const o = results.options;
  return [
    `# fleetgate bench ${results.date}`,
    '',
    `- commit: \`${results.sha}\`${results.dirty ? ' (with uncommitted changes in src/, bench/ or the package files)' : ''}`,
    `- machine: ${machineLine(results)}`,
    `- date: ${results.date}`,
    `- load: ${o.rounds} rounds × ${o.duration} s per side after a thrown-away warm-up, alternating fleetgate and the reference; ${o.connections} connections, ${o.pipelining} pipelined (the cold JWT rows: 1)${results.full ? '; every scenario' : ''}`,
    `- ratio: fleetgate's median / the reference's median, measured in the same run (only ratios within one run mean something on a shared machine); "rounds" gives the lowest and highest ratio of the paired rounds; spread: (max − min) / median of the rounds`,
    `- data: \`${files.json}\`${files.svg ? `, plot: \`${files.svg}\`` : ''}`,
    '',
    resultsTable(results),
    '',
    ...(o.rounds < 3 ? [`Only ${o.rounds} round(s): \`npm run bench:gate\` and \`npm run bench:baseline\` need at least 3.`, ''] : []),
  ].join('\n');
}
