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

parentPort?.postMessage(kWorkerLoaded);
