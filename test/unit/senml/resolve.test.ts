import { describe, expect, it } from 'vitest';
import { decodeSenmlCbor, encodeSenmlCbor, encodeSenmlJson } from '../../../src/senml/codec.ts';
import { resolveSenml } from '../../../src/senml/resolve.ts';
import { kValidPacks } from '../../fixtures/senml.ts';

const now = 1_800_000_000;

describe('senml/resolve', () => {
  it('resolves the RFC 8428 §5.1.3 pack to the §5.1.4 resolved records, in chronological order (§4.6)', () => {
    const resolved = JSON.parse(encodeSenmlJson(resolveSenml(kValidPacks['multiple measurements (§5.1.3)'] as never, now)).toString());
    // RFC 8428 §5.1.4's records, with bver kept because it is not 10, sorted by time as §4.6 asks ("the Records need
    // to be in chronological order in the Pack"; the example in §5.1.4 lists them as received).
    expect(resolved).toEqual([
      { bver: 5, n: 'urn:dev:ow:10e2073a0108006:current', u: 'A', v: 1.2, t: 1.276020071001e9 },
      { bver: 5, n: 'urn:dev:ow:10e2073a0108006:current', u: 'A', v: 1.3, t: 1.276020072001e9 },
      { bver: 5, n: 'urn:dev:ow:10e2073a0108006:voltage', u: 'V', v: 120.1, t: 1.276020076001e9 },
    ]);
  });

  it('keeps records of one instant in their order when sorting, and a pack already in order as it is', () => {
    const names = (pack: object[]) => resolveSenml(pack as never, now).map((r) => `${r.n}@${r.t - now}`);
    expect(names([{ n: 'c', v: 1, t: -1 }, { n: 'a', v: 1, t: -2 }, { n: 'b', v: 1, t: -2 }])).toEqual(['a@-2', 'b@-2', 'c@-1']);
    expect(names([{ n: 'a', v: 1, t: -2 }, { n: 'b', v: 1 }, { n: 'c', v: 1 }])).toEqual(['a@-2', 'b@0', 'c@0']);
  });

  it('applies a record of base fields only to the records after it, and gives no record for it', () => {
    const resolved = resolveSenml(kValidPacks['base name in a record of its own (RFC 8428 §4.6: base fields apply to the records after them)'] as never, now);
    expect(resolved).toEqual([{ bver: undefined, n: 'urn:dev:ow:10e2073a01080063:temp', u: 'Cel', v: 23.1, vs: undefined, vb: undefined, vd: undefined, s: undefined, t: now, ut: undefined }]);
  });

  it('makes relative and missing times absolute from now (§4.5.3)', () => {
    const [b, a] = resolveSenml([{ n: 'a', v: 1 }, { n: 'b', v: 2, t: -10 }], now);
    expect(a!.t).toBe(now);
    expect(b!.t).toBe(now - 10);
  });

  it('adds base value and base sum, and drops bver 10', () => {
    const [r] = resolveSenml([{ bver: 10, bn: 'm:', bv: 100, bs: 5, n: 'x', v: 1, s: 2 }], now);
    expect(r).toMatchObject({ bver: undefined, n: 'm:x', v: 101, s: 7 });
  });

  it('round-trips senml+cbor with the RFC 8428 §6 integer labels, vd as a byte string', () => {
    const records = resolveSenml(kValidPacks['multiple data types (§5.1.6)'] as never, now);
    const bytes = encodeSenmlCbor(records);
    // First record's first key is label 0 (n), as an integer, not the string "n".
    expect(bytes.includes(Buffer.from('616e', 'hex'))).toBe(false);
    expect(decodeSenmlCbor(bytes)).toEqual(JSON.parse(encodeSenmlJson(records).toString()));
  });
});

describe('senml/codec encodeSenmlJson', () => {
  it.each(Object.entries(kValidPacks))('gives exactly what JSON.stringify gives, for %s', (_name, pack) => {
    const records = resolveSenml(pack as never, now);
    expect(encodeSenmlJson(records).toString()).toBe(JSON.stringify(records));
  });

  it('escapes strings', () => {
    const records = resolveSenml([{ n: 'x', vs: 'quote " backslash \\ newline \n unicode é' }], now);
    expect(JSON.parse(encodeSenmlJson(records).toString())[0].vs).toBe('quote " backslash \\ newline \n unicode é');
  });
});
