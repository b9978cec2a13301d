import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNats as nats, startPostgres as postgres, startRedis as redis } from '../../src/cluster/servers.ts';
import { ensureDatabase } from '../../src/cluster/local-cluster.ts';
import { freePort } from '../../src/cluster/ports.ts';
import type { Service } from '../../src/cluster/service.ts';

/** A real server the tests start on a free loopback port (Debian packages, installed by the pretest step). */
export interface ServerProcess {
  readonly port: number;
  readonly url: string;
  /** stops it at once, as a crash would */
  kill(): Promise<void>;
  /** started again on the same port and data */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function serverProcess(service: Service, url: string, dir?: string): ServerProcess {
  return {
    port: service.port, url,
    kill: () => service.kill(),
    restart: () => service.restart(),
    async close() {
      await service.stop();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function scratch(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `fleetgate-${name}-`));
  // PostgreSQL runs as its own user under root: it must be able to reach its directory
  chmodSync(dir, 0o755);
  return dir;
}

export async function startNats(): Promise<ServerProcess> {
  const service = await nats(await freePort());
  return serverProcess(service, `nats://127.0.0.1:${service.port}`);
}

export async function startRedis(): Promise<ServerProcess> {
  const dir = scratch('redis');
  const service = await redis(await freePort(), dir);
  return serverProcess(service, `redis://127.0.0.1:${service.port}`, dir);
}

/** PostgreSQL without fsync, with `database(name)` making a new empty database and giving its URL. */
export async function startPostgres(): Promise<ServerProcess & { database(name: string): Promise<string> }> {
  const dir = scratch('pg');
  const service = await postgres(await freePort(), join(dir, 'pg'), { durable: false });
  let n = 0;
  return {
    ...serverProcess(service, service.url, dir),
    /** a new empty database; its URL */
    database: (name: string) => ensureDatabase(service.url, `${name}_${process.pid}_${++n}`),
  };
}
