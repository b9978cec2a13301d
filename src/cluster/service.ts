import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

/**
 * A server process fleetgate starts for a local cluster or a test (nats-server, PostgreSQL, Redis, HAProxy, a gateway
 * instance): started, awaited on its port, stopped with SIGTERM (then SIGKILL), or crashed on purpose.
 */
export interface Service {
  readonly name: string;
  readonly port: number;
  /** its output so far, for an error message */
  readonly log: () => string;
  /** stops it at once, as a crash would */
  kill(): Promise<void>;
  /** killed, then started again on the same port and data */
  restart(): Promise<void>;
  /** SIGTERM, and SIGKILL if it is still there after `graceMs` */
  stop(graceMs?: number): Promise<void>;
}

export interface ServiceSpec {
  readonly name: string;
  readonly port: number;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** run as this user (a server that refuses root, started by root) */
  readonly user?: { readonly uid: number; readonly gid: number };
  /** the signal that stops it at once: SIGKILL, or SIGQUIT for PostgreSQL's postmaster so that its children go too */
  readonly crash?: NodeJS.Signals;
  /** ms to wait for its port */
  readonly startTimeout?: number;
}

/** Resolves once something accepts TCP connections on the loopback port. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (open) return;
    if (!alive()) throw new Error('it exited');
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startService(spec: ServiceSpec): Promise<Service> {
  let output = '';
  let child: ChildProcess;
  const launch = async (): Promise<void> => {
    child = spawn(spec.command, spec.args, { stdio: ['ignore', 'pipe', 'pipe'], env: spec.env ?? process.env, ...spec.user });
    // Keep the tail only: a long-running server's log must not grow this process's memory.
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-16_384));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.on('error', (err) => keep(Buffer.from(String(err))));
    const c = child;
    try {
      await waitForPort(spec.port, spec.startTimeout ?? 15_000, () => c.exitCode === null && c.signalCode === null);
    } catch (err) {
      c.kill('SIGKILL');
      throw new Error(`${spec.name} did not start (${(err as Error).message}):\n${output.trim()}`);
    }
  };
  await launch();
  const kill = async (): Promise<void> => {
    child.kill(spec.crash ?? 'SIGKILL');
    await exited(child);
  };
  return {
    name: spec.name,
    port: spec.port,
    log: () => output,
    kill,
    async restart() {
      await kill();
      await launch();
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited(child);
      clearTimeout(timer);
    },
  };
}
