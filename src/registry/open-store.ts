import { openPostgresStore } from './postgres-store.ts';
import { openSqliteStore } from './sqlite-store.ts';
import type { Store } from './store.ts';

/** The store a FLEETGATE_STORE URL names: `sqlite:<path>` (embedded default) or `postgres://` (shared by instances). */
export function openStore(url: string): Store {
  return url.startsWith('postgres://') || url.startsWith('postgresql://') ? openPostgresStore(url) : openSqliteStore(url);
}
