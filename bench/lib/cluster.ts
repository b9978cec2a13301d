import { readdirSync, readFileSync } from 'node:fs';

/**
 * The cluster pieces in src/cluster start their processes without handing out pids, and the bench reads CPU from
 * /proc/<pid>/stat: this finds the process by its command line (and, for a gateway instance, by its environment).
 * Only this user's processes have a readable environ, which is all the bench starts.
 */
export function pidOf(match: (cmdline: readonly string[], environ: () => readonly string[]) => boolean): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (cmdline.length > 0 && match(cmdline, () => readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0'))) return Number(entry);
    } catch {
      // gone meanwhile, or not ours
    }
  }
  throw new Error('bench: no such process in /proc');
}

/** A fleetgate instance (`node dist/main.js serve`) by its HTTP port. */
export const instancePid = (httpPort: number) =>
  pidOf((cmd, env) => cmd.some((a) => a.endsWith('main.js')) && cmd.includes('serve') && env().includes(`FLEETGATE_HTTP_PORT=${httpPort}`));
