import { openPostgresStore } from './postgres-store.ts';
import { openSqliteStore } from './sqlite-store.ts';
import type { Store } from './store.ts';

/**
 * The store a FLEETGATE_STORE URL names: `sqlite:<path>` (embedded default) or `postgres://` (shared by
 * instances). `busyTimeout`: how long a write may wait for another process's lock (FLEETGATE_STORE_BUSY_TIMEOUT).
 */
export function openStore(url: string, busyTimeout: number): Store {
  return url.startsWith('postgres://') || url.startsWith('postgresql://') ? openPostgresStore(url, busyTimeout) : openSqliteStore(url, busyTimeout);
}
