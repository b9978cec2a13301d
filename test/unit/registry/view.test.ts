import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Provisioning } from '../../../src/registry/service.ts';
import { openSqliteStore } from '../../../src/registry/sqlite-store.ts';
import type { Store } from '../../../src/registry/store.ts';
import { RegistryView } from '../../../src/registry/view.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('registry/view', () => {
  it('keeps syncing after a failed read of the change log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetgate-view-'));
    dirs.push(dir);
    const store: Store = openSqliteStore(`sqlite:${join(dir, 'db')}`);
    const view = new RegistryView(store);
    await view.load();
    // The store fails once (a locked database, say), then works again.
    const read = store.changesSince.bind(store);
    let failures = 1;
    store.changesSince = (since) => (failures-- > 0 ? Promise.reject(new Error('database is locked')) : read(since));
    await expect(view.sync()).rejects.toThrow('database is locked');
    const domain = await new Provisioning(store, view).createDomain({ name: 'after the failure' });
    expect(view.domain(domain.id)?.name).toBe('after the failure');
  });
});
