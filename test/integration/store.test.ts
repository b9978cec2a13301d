import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { openPostgresStore } from '../../src/registry/postgres-store.ts';
import { openSqliteStore } from '../../src/registry/sqlite-store.ts';
import { storeContract } from '../contract/store.ts';
import { startPostgres } from '../helpers/servers.ts';

storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-store-'));
  const store = openSqliteStore(`sqlite:${join(dir, 'db')}`);
  return { store, close: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
});

let postgres: Awaited<ReturnType<typeof startPostgres>>;
beforeAll(async () => {
  postgres = await startPostgres();
}, 60_000);
afterAll(async () => postgres?.close());

storeContract('postgres', async () => {
  const store = openPostgresStore(await postgres.database('contract'));
  return { store, close: () => store.close() };
});
