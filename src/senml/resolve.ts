import { kSenmlVersion, type ResolvedRecord, type SenmlRecord } from './types.ts';

// RFC 8428 §4.5.3: a time below 2**28 is relative to now.
const kRelativeTimeLimit = 2 ** 28;

/**
 * RFC 8428 §4.6: applies the base fields to each record, giving resolved records. Times become absolute (seconds since
 * the epoch; relative ones counted from `now`, a record without time gets `now`), so subscribers never see base fields.
 */
export function resolveSenml(records: readonly SenmlRecord[], now: number): ResolvedRecord[] {
  const out = new Array<ResolvedRecord>(records.length);
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
    const t = bt + (r.t ?? 0);
    out[i] = {
      bver: bver === kSenmlVersion ? undefined : bver,
      n: r.n === undefined ? bn : bn + r.n,
      u: r.u ?? bu,
      v: r.v === undefined ? undefined : r.v + bv,
      vs: r.vs,
      vb: r.vb,
      vd: r.vd,
      s: r.s === undefined ? undefined : r.s + bs,
      t: t < kRelativeTimeLimit ? now + t : t,
      ut: r.ut,
    };
  }
  return out;
}
