import { describe, expect, it } from 'vitest';
import { validateSenml } from '../../../src/senml/validate.ts';
import { kInvalidPacks, kValidPacks } from '../../fixtures/senml.ts';

describe('senml/validate', () => {
  it.each(Object.entries(kValidPacks))('accepts %s', (_name, pack) => {
    expect(validateSenml(pack)).toEqual({ ok: true, records: pack });
  });

  it.each(kInvalidPacks)('refuses a pack breaking $rule (record $index): $pack', ({ rule, index, pack }) => {
    const result = validateSenml(JSON.parse(pack));
    expect(result).toMatchObject({ ok: false, rule, index });
    expect(result.ok === false && result.message).toMatch(new RegExp(`^record ${index}: `));
  });
});
