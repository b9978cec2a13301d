import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { kWorkerLoaded } from './key-material.ts';
import { hashPassword as hash, verifyPassword as check } from './password.ts';

/**
 * Password hashing worker (piscina): scrypt, in a pool of its own (auth/pool.ts), so that sign-ins queue behind each
 * other and never in front of token checks. No keys here.
 */
export function hashPassword(password: string): string {
  return hash(password);
}

export function verifyPassword({ password, hash: encoded }: { password: string; hash: string }): boolean {
  return check(password, encoded);
}

// A lower priority for this thread alone (Linux: the nice value is per thread, and pid 0 names the caller): on a busy
// host the scheduler then lets token checks and the event loop run before the next slice of scrypt, rather than after
// it (measured on 2 cores: cold-token publish p99 during a sign-in flood, see test/integration/login-flood.test.ts).
try {
  setPriority(10);
} catch {
  // Not permitted here (some containers): hashing still has its own queue.
}

parentPort?.postMessage(kWorkerLoaded);
