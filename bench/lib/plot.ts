import type { Baseline } from './gate.ts';
import { machineLine } from './report.ts';
import { roundRatios, unitOf, type ResultsFile, type ScenarioResult } from './results.ts';
import { targetOf } from './targets.ts';

/**
 * A results file as one SVG, written by hand (no chart library): the ratio per scenario as bars, with the 1.0 line, the
 * targets, the paired rounds' range and the baseline; and, when fan-out scenarios ran, deliveries/s against the number
 * of subscribers for fleetgate and its reference. A fan-out scenario is one that sets `subscribers` in its result or
 * has `<P>x<Q>` (publishers × subscribers) in its name.
 */

const kWidth = 920;
const kLeft = 240;
const kRight = 70;
const kRow = 24;
const kColours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (x: number) => Number(x.toFixed(1));
const text = (x: number, y: number, s: string, attrs = '') => `<text x="${n(x)}" y="${n(y)}"${attrs ? ' ' + attrs : ''}>${esc(s)}</text>`;
const line = (x1: number, y1: number, x2: number, y2: number, attrs: string) => `<line x1="${n(x1)}" y1="${n(y1)}" x2="${n(x2)}" y2="${n(y2)}" ${attrs}/>`;

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow;
}

function ratioPanel(results: ResultsFile, baseline: Baseline | undefined, top: number): { svg: string[]; height: number } {
  const entries = Object.entries(results.results);
  const out: string[] = [];
  const plotW = kWidth - kLeft - kRight;
  const values = entries.flatMap(([name, r]) => [r.ratio, ...(roundRatios(r) ?? []), targetOf(name)?.minRatio ?? 0, baseline?.scenarios[name]?.ratio ?? 0]);
  // Up to 2: a ratio beyond (an amount such as memory, where lower is better) runs to the edge with its value beside it.
  const xmax = Math.min(2, Math.max(1.2, ...values.filter(Number.isFinite).map((v) => v * 1.08)));
  const step = niceStep(xmax, 6);
  const x = (v: number) => kLeft + (Math.min(v, xmax) / xmax) * plotW;
  const axisY = top + 28 + entries.length * kRow;
  out.push(text(16, top + 14, 'fleetgate / reference (ratio of the medians; higher is better unless marked)', 'font-weight="bold"'));
  for (let v = 0; v <= xmax + 1e-9; v += step) {
    out.push(line(x(v), top + 22, x(v), axisY, 'stroke="#e4e4e4"'));
    out.push(text(x(v), axisY + 14, String(Number(v.toFixed(2))), 'text-anchor="middle" fill="#555"'));
  }
  entries.forEach(([name, r], i) => {
    const y = top + 28 + i * kRow;
    const target = targetOf(name)?.minRatio;
    const lower = r.better === 'lower';
    const colour = target === undefined || lower ? '#6b8fbf' : r.ratio >= target ? '#3a9d5d' : '#e08a2e';
    out.push(text(kLeft - 8, y + kRow / 2 + 4, lower ? `${name} (lower is better)` : name, 'text-anchor="end"'));
    if (Number.isFinite(r.ratio)) out.push(`<rect x="${kLeft}" y="${n(y + 4)}" width="${n(x(r.ratio) - kLeft)}" height="${kRow - 8}" fill="${colour}"/>`);
    const rounds = roundRatios(r);
    if (rounds && rounds.length > 1) out.push(line(x(Math.min(...rounds)), y + kRow / 2, x(Math.max(...rounds)), y + kRow / 2, 'stroke="#222" stroke-width="1.5"'));
    if (target !== undefined) out.push(line(x(target), y + 1, x(target), y + kRow - 1, 'stroke="#c00" stroke-width="3"'));
    const base = baseline?.scenarios[name]?.ratio;
    if (base !== undefined) {
      const bx = x(base);
      const cy = y + kRow / 2;
      out.push(`<path d="M${n(bx)} ${n(cy - 6)} L${n(bx + 6)} ${n(cy)} L${n(bx)} ${n(cy + 6)} L${n(bx - 6)} ${n(cy)} Z" fill="none" stroke="#000" stroke-width="1.5"/>`);
    }
    // The value goes right of whatever is drawn on the row, so that no mark covers it.
    const right = Math.max(r.ratio, ...(rounds ?? []), target ?? 0, base ?? 0);
    out.push(text(x(Number.isFinite(right) ? right : 0) + 8, y + kRow / 2 + 4, Number.isFinite(r.ratio) ? r.ratio.toFixed(2) : '–', 'fill="#222"'));
  });
  out.push(line(x(1), top + 22, x(1), axisY, 'stroke="#000" stroke-dasharray="5 3" stroke-width="1.5"'));
  // Legend.
  const ly = axisY + 34;
  const lx = 40;
  out.push(`<rect x="${lx}" y="${ly - 9}" width="14" height="10" fill="#3a9d5d"/>`, text(lx + 18, ly, 'meets its target'));
  out.push(`<rect x="${lx + 125}" y="${ly - 9}" width="14" height="10" fill="#e08a2e"/>`, text(lx + 143, ly, 'misses it'));
  out.push(`<rect x="${lx + 215}" y="${ly - 9}" width="14" height="10" fill="#6b8fbf"/>`, text(lx + 233, ly, 'no ratio target'));
  out.push(line(lx + 340, ly - 10, lx + 340, ly + 2, 'stroke="#c00" stroke-width="3"'), text(lx + 347, ly, 'target'));
  out.push(line(lx + 400, ly - 4, lx + 420, ly - 4, 'stroke="#222" stroke-width="1.5"'), text(lx + 425, ly, 'rounds (low–high)'));
  if (baseline) out.push(`<path d="M${lx + 548} ${ly - 10} L${lx + 554} ${ly - 4} L${lx + 548} ${ly + 2} L${lx + 542} ${ly - 4} Z" fill="none" stroke="#000" stroke-width="1.5"/>`, text(lx + 560, ly, `baseline (${baseline.sha}${baseline.from ? `, median of ${baseline.from.length} runs` : ""})`));
  return { svg: out, height: ly - top + 16 };
}

interface FanoutPoint {
  readonly series: string;
  readonly label: string;
  readonly subscribers: number;
  readonly fleetgate: number;
  readonly reference: number;
  readonly unit: string;
}

export function fanoutPoints(results: ResultsFile): FanoutPoint[] {
  const points: FanoutPoint[] = [];
  for (const [name, r] of Object.entries(results.results) as [string, ScenarioResult][]) {
    const shape = /-(\d+)x(\d+)(?=-|$)/.exec(name);
    const subscribers = r.subscribers ?? (shape ? Number(shape[2]) : undefined);
    if (subscribers === undefined || r.better === 'lower') continue;
    const series = shape ? name.replace(shape[0], '') : name.replace(/-\d+$/, '');
    points.push({ series, label: shape ? `${shape[1]}×${shape[2]}` : `1×${subscribers}`, subscribers, fleetgate: r.fleetgate.median, reference: r.reference.median, unit: unitOf(name, r) });
  }
  return points;
}

function fanoutPanel(points: readonly FanoutPoint[], top: number): { svg: string[]; height: number } {
  const out: string[] = [];
  const height = 300;
  const plotTop = top + 30;
  const plotBottom = top + height - 40;
  const plotW = kWidth - kLeft - kRight;
  const subs = points.map((p) => p.subscribers);
  const [smin, smax] = [Math.min(...subs), Math.max(...subs)];
  const logX = smax / Math.max(smin, 1) >= 10;
  const lo = logX ? 10 ** Math.floor(Math.log10(Math.max(smin, 1))) : 0;
  const hi = logX ? 10 ** Math.ceil(Math.log10(smax)) : smax * 1.1;
  const x = (s: number) => kLeft + (logX ? (Math.log10(s) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1) : (s - lo) / (hi - lo || 1)) * plotW;
  const ymax = Math.max(...points.flatMap((p) => [p.fleetgate, p.reference])) * 1.1 || 1;
  const ystep = niceStep(ymax, 5);
  const y = (v: number) => plotBottom - (v / ymax) * (plotBottom - plotTop);
  const units = [...new Set(points.map((p) => p.unit))].join(', ');
  out.push(text(16, top + 14, `fan-out: ${units} against subscribers (solid: fleetgate, dashed: reference)`, 'font-weight="bold"'));
  for (let v = 0; v <= ymax + 1e-9; v += ystep) {
    out.push(line(kLeft, y(v), kLeft + plotW, y(v), 'stroke="#e4e4e4"'));
    out.push(text(kLeft - 8, y(v) + 4, v >= 1e6 ? `${Number((v / 1e6).toFixed(2))}M` : v >= 1e3 ? `${Number((v / 1e3).toFixed(1))}k` : String(v), 'text-anchor="end" fill="#555"'));
  }
  const xticks = logX ? Array.from({ length: Math.round(Math.log10(hi / lo)) + 1 }, (_, i) => lo * 10 ** i) : [...new Set(subs)].sort((a, b) => a - b);
  for (const s of xticks) out.push(line(x(s), plotTop, x(s), plotBottom, 'stroke="#e4e4e4"'), text(x(s), plotBottom + 16, s.toLocaleString('en-US'), 'text-anchor="middle" fill="#555"'));
  out.push(text(kLeft + plotW / 2, plotBottom + 32, `subscribers${logX ? ' (log scale)' : ''}`, 'text-anchor="middle" fill="#555"'));
  const series = [...new Set(points.map((p) => p.series))];
  series.forEach((s, i) => {
    const colour = kColours[i % kColours.length]!;
    const ps = points.filter((p) => p.series === s).sort((a, b) => a.subscribers - b.subscribers);
    for (const side of ['fleetgate', 'reference'] as const) {
      if (ps.length > 1) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${side === 'reference' ? ' stroke-dasharray="6 4"' : ''} points="${ps.map((p) => `${n(x(p.subscribers))},${n(y(p[side]))}`).join(' ')}"/>`);
      for (const p of ps) out.push(`<circle cx="${n(x(p.subscribers))}" cy="${n(y(p[side]))}" r="4" fill="${side === 'fleetgate' ? colour : '#fff'}" stroke="${colour}" stroke-width="2"><title>${esc(`${s} ${p.label} ${side}: ${Math.round(p[side]).toLocaleString('en-US')} ${p.unit}`)}</title></circle>`);
    }
    for (const p of ps) out.push(text(x(p.subscribers) + 7, y(p.fleetgate) - 6, p.label, `fill="${colour}" font-size="11"`));
    out.push(`<circle cx="${kLeft - 200}" cy="${plotTop + 8 + i * 18}" r="4" fill="${colour}"/>`, text(kLeft - 190, plotTop + 12 + i * 18, s, `fill="${colour}"`));
  });
  return { svg: out, height };
}

/** The SVG for a results file; with `baseline`, its ratios are marked beside the bars. */
export function renderPlot(results: ResultsFile, baseline?: Baseline): string {
  const header = [
    text(16, 24, `fleetgate bench · ${results.sha}${results.dirty ? '+' : ''} · ${results.date.slice(0, 16).replace('T', ' ')} UTC`, 'font-size="16" font-weight="bold"'),
    text(16, 42, `${machineLine(results)} · ${results.options.rounds} rounds × ${results.options.duration} s`, 'fill="#555"'),
  ];
  const ratio = ratioPanel(results, baseline, 60);
  const points = fanoutPoints(results);
  const fanout = points.length > 0 ? fanoutPanel(points, 60 + ratio.height + 10) : { svg: [], height: 0 };
  const height = 60 + ratio.height + (fanout.height ? fanout.height + 10 : 0);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${kWidth}" height="${height}" viewBox="0 0 ${kWidth} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...header,
    ...ratio.svg,
    ...fanout.svg,
    '</svg>',
    '',
  ].join('\n');
}
