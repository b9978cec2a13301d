import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './gateway.ts';

/** A real server process the tests start on a free loopback port (Debian packages, installed by the pretest step). */
export interface ServerProcess {
  readonly port: number;
  readonly url: string;
  /** SIGKILL, as a crash would */
  kill(): Promise<void>;
  /** started again on the same port and data */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
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
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

/** `crash`: the signal that stops it at once (PostgreSQL's postmaster takes SIGQUIT, so that its children go too). */
async function supervise(name: string, port: number, url: string, start: () => ChildProcess, cleanup: () => void, crash: NodeJS.Signals = 'SIGKILL'): Promise<ServerProcess> {
  let child = start();
  let log = '';
  const capture = (c: ChildProcess) => {
    c.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  };
  capture(child);
  try {
    await waitForPort(port);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${name} did not start: ${(err as Error).message}\n${log}`);
  }
  return {
    port,
    url,
    async kill() {
      child.kill(crash);
      await exited(child);
    },
    async restart() {
      child.kill(crash);
      await exited(child);
      child = start();
      capture(child);
      await waitForPort(port);
    },
    async close() {
      child.kill('SIGTERM');
      await exited(child);
      cleanup();
    },
  };
}

/** nats-server (Debian `nats-server`) on a free port. */
export async function startNats(): Promise<ServerProcess> {
  const port = await freePort();
  return supervise('nats-server', port, `nats://127.0.0.1:${port}`,
    () => spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] }), () => {});
}

/** redis-server (Debian `redis-server`) on a free port, persistence off unless asked. */
export async function startRedis(): Promise<ServerProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-redis-'));
  return supervise('redis-server', port, `redis://127.0.0.1:${port}`,
    () => spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] }),
    () => rmSync(dir, { recursive: true, force: true }));
}

const kPgBin = '/usr/lib/postgresql/15/bin';

/**
 * PostgreSQL (Debian `postgresql`) in a throwaway cluster on a free port, trust auth on loopback, fsync off. It
 * refuses to run as root, so as root it runs as the `postgres` user the package creates.
 */
export async function startPostgres(): Promise<ServerProcess & { database(name: string): Promise<string> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-pg-'));
  const asPostgres = process.getuid?.() === 0;
  const run = (bin: string, args: string[]) => (asPostgres ? ['runuser', ['-u', 'postgres', '--', join(kPgBin, bin), ...args]] : [join(kPgBin, bin), args]) as [string, string[]];
  if (asPostgres) {
    const pgUid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const pgGid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, pgUid, pgGid);
  }
  const data = join(dir, 'data');
  execFileSync(...run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']), { stdio: 'pipe' });
  const server = await supervise('postgres', port, `postgres://postgres@127.0.0.1:${port}/postgres`,
    () => spawn(...run('postgres', ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']), { stdio: ['ignore', 'pipe', 'pipe'] }),
    () => rmSync(dir, { recursive: true, force: true }), 'SIGQUIT');
  let n = 0;
  return {
    ...server,
    /** a new empty database; its URL */
    async database(name: string) {
      const db = `${name}_${process.pid}_${++n}`;
      // The port opens a moment before the server takes queries ("the database system is starting up").
      let client: pg.Client;
      for (let tries = 0; ; tries++) {
        client = new pg.Client({ connectionString: server.url });
        try {
          await client.connect();
          break;
        } catch (err) {
          if (tries > 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await client.query(`CREATE DATABASE ${db}`);
      await client.end();
      return `postgres://postgres@127.0.0.1:${port}/${db}`;
    },
  };
}
