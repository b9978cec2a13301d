/** RFC 8428 field names. A record as received may carry base fields; a resolved record never does (§4.6). */
export interface SenmlRecord {
  bn?: string;
  bt?: number;
  bu?: string;
  bv?: number;
  bs?: number;
  bver?: number;
  n?: string;
  u?: string;
  v?: number;
  vs?: string;
  vb?: boolean;
  vd?: string;
  s?: number;
  t?: number;
  ut?: number;
}

export interface ResolvedRecord {
  bver: number | undefined;
  n: string;
  u: string | undefined;
  v: number | undefined;
  vs: string | undefined;
  vb: boolean | undefined;
  vd: string | undefined;
  s: number | undefined;
  t: number;
  ut: number | undefined;
}

/** RFC 8428 §6: CBOR labels. */
export const kCborLabels = {
  bver: -1, bn: -2, bt: -3, bu: -4, bv: -5, bs: -6,
  n: 0, u: 1, v: 2, vs: 3, vb: 4, s: 5, t: 6, ut: 7, vd: 8,
} as const;

/** RFC 8428 §4.5.3: the SenML version this implementation speaks; resolved records omit it. */
export const kSenmlVersion = 10;
