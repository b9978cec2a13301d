import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { expect, onTestFailed } from 'vitest';
import { http } from './clients.ts';

/** Every process below `pid` (Linux /proc): what a launcher (npm, unshare) started, and what those started. */
export function descendants(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter((s) => s !== '').map(Number));
  return children.flatMap((child) => [child, ...descendants(child)]);
}

/** Whether a process still exists (signal 0 checks without sending). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process whose output is kept (printed if the test fails) until it exits. */
export function spawnLogged(cmd: string, args: string[], options: SpawnOptions): { child: ChildProcess; exited: Promise<number | null>; log: () => string } {
  const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  onTestFailed(() => console.log(`${cmd} ${args.join(' ')} log:\n${log}`));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, log: () => log };
}

/** Resolves once a gateway's plain HTTP listener answers GET /health with 200. */
export async function healthy(port: number): Promise<void> {
  await expect.poll(() => http('GET', `http://127.0.0.1:${port}/health`).then((r) => r.status, () => 0), { timeout: 15_000 }).toBe(200);
}
