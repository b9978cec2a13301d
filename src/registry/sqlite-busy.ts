import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayError } from '../errors.ts';

/** Pauses between two tries on a locked store, doubling from the first to the longest (SQLite's own steps: 1 to 100 ms). */
const kFirstPause = 1;
const kLongestPause = 50;

/**
 * Runs a synchronous SQLite operation without ever waiting inside SQLite: better-sqlite3 holds the thread, and so the
 * whole event loop, for as long as SQLite waits for a lock. So the store runs with busy_timeout 0, and a store locked by
 * another process (SQLITE_BUSY, SQLITE_LOCKED and their extended codes) is tried again after a pause in which the loop
 * turns, until `timeoutMs` has passed: then FG_ERR_STORE_UNAVAILABLE. A full disk (SQLITE_FULL) is FG_ERR_STORE_FULL.
 */
export async function whenUnlocked<T>(op: () => T, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let pause = kFirstPause; ; pause = Math.min(pause * 2, kLongestPause)) {
    try {
      return op();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'SQLITE_FULL') throw new GatewayError('FG_ERR_STORE_FULL', 'registry store is full: no space left on its disk');
      if (typeof code !== 'string' || !/^SQLITE_(BUSY|LOCKED)/.test(code)) throw err;
      const left = deadline - performance.now();
      if (left <= 0) throw new GatewayError('FG_ERR_STORE_UNAVAILABLE', 'registry store is locked by another process: retry shortly');
      await sleep(Math.min(pause, left));
    }
  }
}

/** An async interface's operations as better-sqlite3 runs them: synchronously, each returning what the async one resolves to. */
export type Synchronous<T> = { [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R : never };

/** The async interface whose every operation runs the synchronous one through whenUnlocked. */
export function whenUnlockedAll<T extends object>(ops: Synchronous<T>, timeoutMs: number): T {
  const out: Record<string, unknown> = {};
  for (const [name, op] of Object.entries(ops) as [string, (...args: unknown[]) => unknown][]) {
    out[name] = (...args: unknown[]) => whenUnlocked(() => op(...args), timeoutMs);
  }
  return out as T;
}
