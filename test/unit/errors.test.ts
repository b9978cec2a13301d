import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kErrors } from '../../src/errors.ts';

const doc = readFileSync(new URL('../../docs/ERRORS.md', import.meta.url), 'utf8');
const headings = [...doc.matchAll(/^## (FG_ERR_\w+)$/gm)].map((m) => m[1]);

describe('errors', () => {
  it('every code is well formed', () => {
    for (const code of Object.keys(kErrors)) expect(code).toMatch(/^FG_ERR_[A-Z]+(_[A-Z]+)*$/);
  });

  it('docs/ERRORS.md has one heading per code, no more, none twice', () => {
    expect(new Set(headings).size).toBe(headings.length);
    expect([...headings].sort()).toEqual(Object.keys(kErrors).sort());
  });

  it('docs/ERRORS.md states the HTTP status and WebSocket close code of each code', () => {
    for (const [code, spec] of Object.entries(kErrors)) {
      const section = doc.split(/^## /m).find((s) => s.startsWith(code + '\n'))!;
      expect(section, code).toContain(`HTTP ${spec.status}`);
      expect(section, code).toContain(`WS ${spec.ws}`);
    }
  });
});
