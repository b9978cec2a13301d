import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { haproxyConfig, type Frontends, type Instance } from './haproxy.ts';
import { freePort } from './ports.ts';
import { requirePrograms, startHaproxy, startNats, startPostgres, startRedis } from './servers.ts';
import { startService, type Service } from './service.ts';

export interface LocalClusterOptions {
  /** where PostgreSQL, Redis and the HAProxy config live; kept between runs */
  readonly dir: string;
  readonly instances: number;
  /** public ports on the balancer; 0 picks free ones */
  readonly http: number;
  readonly mqtt: number;
  /** with FLEETGATE_TLS_CERT in `env`: TLS ports on the balancer, passed through to the instances */
  readonly https?: number;
  readonly mqtts?: number;
  /** the instances' environment: FLEETGATE_* settings they all share (admin, TLS files, log level) */
  readonly env: NodeJS.ProcessEnv;
  /** PostgreSQL with fsync (off for tests) */
  readonly durable: boolean;
}

export interface LocalCluster {
  readonly frontends: Required<Pick<Frontends, 'http' | 'mqtt'>> & Pick<Frontends, 'https' | 'mqtts'>;
  readonly store: string;
  readonly bus: string;
  readonly redis: string;
  readonly instances: readonly (Service & Instance)[];
  readonly services: { readonly nats: Service; readonly postgres: Service; readonly redis: Service; readonly haproxy: Service };
  /** everything it started, in reverse order */
  stop(): Promise<void>;
}

/** dist/main.js, from src/cluster (tests) or dist/cluster (the CLI) alike */
const kMain = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

/**
 * A whole cluster on one machine from Debian's packages: nats-server, PostgreSQL, Redis, N fleetgate instances and
 * HAProxy in front of them, each on its own loopback port. What `fleetgate cluster` runs, and what the cluster tests use.
 */
export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  requirePrograms(['nats-server', 'postgres', 'redis-server', 'haproxy']);
  mkdirSync(options.dir, { recursive: true });
  const started: Service[] = [];
  const stop = async (): Promise<void> => {
    for (const s of started.reverse()) await s.stop().catch(() => {});
  };
  try {
    const nats = await startNats(await freePort());
    started.push(nats);
    const postgres = await startPostgres(await freePort(), join(options.dir, 'postgres'), { durable: options.durable });
    started.push(postgres);
    const redis = await startRedis(await freePort(), join(options.dir, 'redis'));
    started.push(redis);
    const store = await ensureDatabase(postgres.url, 'fleetgate');
    // One key-encryption key for every instance (it seals the signing keys in the shared store), made on first use.
    const kek = join(options.dir, 'fleetgate.kek');
    if (!existsSync(kek)) writeFileSync(kek, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    const bus = `nats://127.0.0.1:${nats.port}`;
    const tls = (options.env.FLEETGATE_TLS_CERT ?? '') !== '';

    // One instance first, so that it runs the migrations alone and makes the signing key; then the others together.
    const instances: (Service & Instance)[] = [];
    const launch = async (n: number): Promise<Service & Instance> => {
      const ports = { http: await freePort(), mqtt: await freePort(), ...(tls && { https: await freePort(), mqtts: await freePort() }) };
      const env = {
        ...options.env,
        FLEETGATE_HOST: '127.0.0.1',
        FLEETGATE_HTTP_PORT: String(ports.http),
        FLEETGATE_MQTT_PORT: String(ports.mqtt),
        FLEETGATE_HTTPS_PORT: tls ? String(ports.https) : 'off',
        FLEETGATE_MQTTS_PORT: tls ? String(ports.mqtts) : 'off',
        FLEETGATE_STORE: store,
        ...(!options.env.FLEETGATE_KEY_ENCRYPTION_KEY && { FLEETGATE_KEY_ENCRYPTION_KEY_FILE: options.env.FLEETGATE_KEY_ENCRYPTION_KEY_FILE || kek }),
        FLEETGATE_BUS: bus,
        FLEETGATE_MQTT_PERSISTENCE: `redis://127.0.0.1:${redis.port}`,
        FLEETGATE_TRUSTED_PROXIES: '127.0.0.1/32',
      };
      const service = await startService({ name: `fleetgate-${n}`, port: ports.http, command: process.execPath, args: [kMain, 'serve'], env, startTimeout: 30_000 });
      started.push(service);
      return Object.assign(service, { host: '127.0.0.1', ...ports });
    };
    instances.push(await launch(1));
    instances.push(...(await Promise.all(Array.from({ length: options.instances - 1 }, (_, i) => launch(i + 2)))));

    const frontends = {
      http: options.http || (await freePort()),
      mqtt: options.mqtt || (await freePort()),
      ...(tls && { https: options.https || (await freePort()), mqtts: options.mqtts || (await freePort()) }),
    };
    const config = join(options.dir, 'haproxy.cfg');
    writeFileSync(config, haproxyConfig(frontends, instances, '127.0.0.1'));
    const haproxy = await startHaproxy(frontends.http, config);
    started.push(haproxy);
    return {
      frontends, store, bus, redis: `redis://127.0.0.1:${redis.port}`, instances,
      services: { nats, postgres, redis, haproxy },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A database in that server, made on first use; its URL. */
export async function ensureDatabase(serverUrl: string, name: string): Promise<string> {
  // The port opens a moment before the server takes queries ("the database system is starting up").
  let client: pg.Client;
  for (let tries = 0; ; tries++) {
    client = new pg.Client({ connectionString: serverUrl });
    try {
      await client.connect();
      break;
    } catch (err) {
      if (tries > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return serverUrl.replace(/\/[^/]*$/, `/${name}`);
}
