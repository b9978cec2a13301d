import { kSenmlVersion, type ResolvedRecord, type SenmlRecord } from './types.ts';
import { isBaseOnly } from './validate.ts';

// RFC 8428 §4.5.3: a time below 2**28 is relative to now.
const kRelativeTimeLimit = 2 ** 28;

/**
 * RFC 8428 §4.6: applies the base fields to each record, giving resolved records. Times become absolute (seconds since
 * the epoch; relative ones counted from `now`, a record without time gets `now`), so subscribers never see base fields.
 * A record of base fields only gives no resolved record. "The Records need to be in chronological order in the Pack"
 * (§4.6): a pack out of order is sorted by time (stable, so records of one instant keep their order); one already in
 * order, the common case, is neither copied nor sorted.
 */
export function resolveSenml(records: readonly SenmlRecord[], now: number): ResolvedRecord[] {
  const out = new Array<ResolvedRecord>(records.length);
  let count = 0;
  let ordered = true;
  let last = -Infinity;
  let bn = '';
  let bt = 0;
  let bu: string | undefined;
  let bv = 0;
  let bs = 0;
  let bver: number | undefined;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.bn !== undefined) bn = r.bn;
    if (r.bt !== undefined) bt = r.bt;
    if (r.bu !== undefined) bu = r.bu;
    if (r.bv !== undefined) bv = r.bv;
    if (r.bs !== undefined) bs = r.bs;
    if (r.bver !== undefined) bver = r.bver;
    if (isBaseOnly(r)) continue;
    const relative = bt + (r.t ?? 0);
    const t = relative < kRelativeTimeLimit ? now + relative : relative;
    if (t < last) ordered = false;
    last = t;
    out[count++] = {
      bver: bver === kSenmlVersion ? undefined : bver,
      n: r.n === undefined ? bn : bn + r.n,
      u: r.u ?? bu,
      v: r.v === undefined ? undefined : r.v + bv,
      vs: r.vs,
      vb: r.vb,
      vd: r.vd,
      s: r.s === undefined ? undefined : r.s + bs,
      t,
      ut: r.ut,
    };
  }
  out.length = count;
  return ordered ? out : out.sort(byTime);
}

function byTime(a: ResolvedRecord, b: ResolvedRecord): number {
  return a.t - b.t;
}
