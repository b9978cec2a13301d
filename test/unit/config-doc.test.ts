import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/clients.ts';

const kScript = fileURLToPath(new URL('../../scripts/config-table.mjs', import.meta.url));

describe('docs/CONFIG.md', () => {
  it('is what `npm run docs:config` makes of kSettings in src/config.ts', async () => {
    const check = await run(process.execPath, ['--import', 'tsx', kScript, '--check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
  });
});
