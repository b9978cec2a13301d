import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GatewayError } from '../errors.ts';
import { startService, type Service } from './service.ts';

/**
 * The servers a cluster shares, from Debian's packages, each on a loopback port with its data under a directory.
 * Nothing here is needed by a single gateway (the embedded default).
 */
const kBinaries = {
  'nats-server': { paths: ['/usr/sbin/nats-server', '/usr/bin/nats-server'], apt: 'nats-server' },
  'redis-server': { paths: ['/usr/bin/redis-server'], apt: 'redis-server' },
  haproxy: { paths: ['/usr/sbin/haproxy'], apt: 'haproxy' },
  // Debian installs each major version beside the others; the newest is used
  postgres: { paths: (existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql', { withFileTypes: true }) : []).filter((d) => d.isDirectory())
    .map((d) => d.name).sort((a, b) => Number(b) - Number(a)).map((v) => `/usr/lib/postgresql/${v}/bin/postgres`), apt: 'postgresql' },
} as const;

type Binary = keyof typeof kBinaries;

/** The missing programs' Debian packages, to name in one `apt-get install` line. */
export function missingPackages(needed: readonly Binary[]): string[] {
  return needed.filter((b) => kBinaries[b].paths.every((p) => !existsSync(p))).map((b) => kBinaries[b].apt);
}

export function requirePrograms(needed: readonly Binary[]): void {
  const missing = missingPackages(needed);
  if (missing.length > 0) {
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `missing Debian packages: run  sudo apt-get install -y ${missing.join(' ')}`);
  }
}

function binary(name: Binary): string {
  return kBinaries[name].paths.find((p) => existsSync(p)) ?? name;
}

export function startNats(port: number): Promise<Service> {
  return startService({ name: 'nats-server', port, command: binary('nats-server'), args: ['-a', '127.0.0.1', '-p', String(port)] });
}

export function startRedis(port: number, dir: string): Promise<Service> {
  mkdirSync(dir, { recursive: true });
  return startService({
    name: 'redis-server', port, command: binary('redis-server'),
    args: ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''],
  });
}

/**
 * PostgreSQL in its own cluster directory (made by initdb on first use), trust authentication on loopback only. It
 * refuses to run as root, so under root it runs as the `postgres` user the Debian package creates.
 */
export async function startPostgres(port: number, dir: string, options: { durable: boolean }): Promise<Service & { url: string }> {
  const bin = (name: string) => join(dirname(binary('postgres')), name);
  // Run as the postgres user directly (spawn's uid/gid), not through runuser: a signal must reach the server itself.
  const user = process.getuid?.() === 0 ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : undefined;
  mkdirSync(dir, { recursive: true });
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  if (!existsSync(join(data, 'PG_VERSION'))) {
    // trust: it listens on loopback only (below), for a local cluster or a test, never a deployment
    try {
      execFileSync(bin('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], { stdio: 'pipe', ...user });
    } catch (err) {
      const why = String((err as { stderr?: Buffer }).stderr ?? err).trim();
      throw new Error(`initdb failed${user ? ' (as the postgres user, which must be able to reach ' + dir + ')' : ''}: ${why}`);
    }
  }
  const tuning = options.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
  const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', ...tuning];
  const service = await startService({ name: 'postgres', port, command: bin('postgres'), args, user, crash: 'SIGQUIT', startTimeout: 30_000 });
  return Object.assign(service, { url: `postgres://postgres@127.0.0.1:${port}/postgres` });
}

export function startHaproxy(port: number, configFile: string): Promise<Service> {
  return startService({ name: 'haproxy', port, command: binary('haproxy'), args: ['-db', '-f', configFile] });
}
