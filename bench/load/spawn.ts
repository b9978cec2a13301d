import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * A load generator in its own process (never in the gateway's, nor sharing the bench's event loop). It prints results
 * as JSON lines on stdout and may take commands as lines on stdin; closing stdin tells it to finish. Its soft limit on
 * open files is raised to the hard limit first (`ulimit -n`): the idle and storm scenarios hold thousands of sockets.
 */
export interface Generator {
  /** the next JSON line it prints */
  next<T>(): Promise<T>;
  /** sends one command line */
  send(line: string): void;
  /** closes its stdin and waits for it to exit */
  finish(): Promise<void>;
}

export function startGenerator(script: string, args: Record<string, string | number>): Generator {
  const argv = [process.execPath, '--import', 'tsx', join(import.meta.dirname, script), ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$@"', 'sh', ...argv], { stdio: ['pipe', 'pipe', 'inherit'] });
  // A generator that is done may exit before its stdin is closed.
  child.stdin!.on('error', () => {});
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    async next<T>() {
      const line = await lines.next();
      if (line.done) throw new Error(`${script} exited ${await exited} before answering`);
      return JSON.parse(line.value) as T;
    },
    send: (line) => void child.stdin!.write(line + '\n'),
    async finish() {
      child.stdin!.end();
      const code = await exited;
      if (code !== 0) throw new Error(`${script} exited ${code}`);
    },
  };
}

/** Runs a generator that prints one JSON line and exits. */
export async function runGenerator<T>(script: string, args: Record<string, string | number>): Promise<T> {
  const g = startGenerator(script, args);
  const result = await g.next<T>();
  await g.finish();
  return result;
}

/**
 * Runs a generator that prints {"measuring":true} when its measured seconds begin and then its result, reading
 * `cpuSeconds()` of the server at both points: `serverCpu` is the server's CPU seconds over exactly that span.
 */
export async function runMeasured<T>(script: string, args: Record<string, string | number>, cpuSeconds: () => number): Promise<T & { serverCpu: number }> {
  const g = startGenerator(script, args);
  await g.next();
  const before = cpuSeconds();
  const result = await g.next<T>();
  const serverCpu = cpuSeconds() - before;
  await g.finish();
  return { ...result, serverCpu };
}
