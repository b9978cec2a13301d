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

/** A view loaded from a new, empty SQLite store. */
async function freshView(): Promise<{ store: Store; view: RegistryView }> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-view-'));
  dirs.push(dir);
  const store = openSqliteStore(`sqlite:${join(dir, 'db')}`);
  const view = new RegistryView(store);
  await view.load();
  return { store, view };
}

describe('registry/view', () => {
  it('keeps syncing after a failed read of the change log', async () => {
    const { store, view } = await freshView();
    // The store fails once (a locked database, say), then works again.
    const read = store.changesSince.bind(store);
    let failures = 1;
    store.changesSince = (since) => (failures-- > 0 ? Promise.reject(new Error('database is locked')) : read(since));
    await expect(view.sync()).rejects.toThrow('database is locked');
    const domain = await new Provisioning(store, view).createDomain({ name: 'after the failure' });
    expect(view.domain(domain.id)?.name).toBe('after the failure');
  });
});

describe('registry/view sessions', () => {
  it('forgets sessions that ended (revoked or expired) and keeps live ones', async () => {
    const { store, view } = await freshView();
    const user = { id: 'u1', email: 'u1@example.com', username: null, name: null, passwordHash: '', role: 'user' as const, status: 'enabled' as const, createdAt: new Date().toISOString(), picture: null, locale: null };
    await store.insertUser(user);
    const now = Math.floor(Date.now() / 1000);
    const session = (id: string, expiresAt: number) => ({ id, userId: 'u1', refreshJti: id, createdAt: new Date().toISOString(), expiresAt, revokedAt: null });
    for (const s of [session('live', now + 3600), session('ending', now + 2), session('revoked', now + 3600)]) await store.insertSession(s);
    await store.updateSession('revoked', { revokedAt: new Date().toISOString() });
    await view.sync();
    expect(view.pruneSessions()).toBe(1);
    expect(view.pruneSessions((now + 3) * 1000)).toBe(1);
    expect(view.pruneSessions((now + 3) * 1000)).toBe(0);
    expect(view.session('live')).toBeDefined();
  });
});
