import redisPersistence from 'aedes-persistence-redis';
import { Redis } from 'ioredis';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { within } from '../within.ts';
import type { MqttPersistence } from './open.ts';
import { createRedisSessions } from './redis-sessions.ts';

/** Where a Redis URL points, without its credentials: for logs and errors. */
function redisSite(url: string): string {
  const { host, pathname } = new URL(url);
  return `${host}${pathname === '/' ? '' : pathname}`;
}

/**
 * MQTT sessions, QoS 1 queues and retained messages in Redis (aedes-persistence-redis), shared by every instance. Its
 * subscription index is a copy in each instance's memory, kept in step over the bus (ingress/mqtt/cluster.ts).
 *
 * No offline queue: while Redis is down a command fails at once instead of waiting in memory without bound, and
 * `up()` is false (CONNECT is refused with FG_ERR_MQTT_STATE_UNAVAILABLE, /health/ready answers 503). A start that
 * cannot reach Redis within `connectWait` ms fails with a config error naming the setting.
 */
export async function createRedisPersistence(url: string, logger: Logger, connectWait = 10_000): Promise<MqttPersistence> {
  const site = redisSite(url);
  const conn = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectionName: 'fleetgate-mqtt',
    retryStrategy: (attempt) => Math.min(attempt * 250, 2_000),
  });
  let down = false;
  // ioredis reports every failed reconnection: logged once per outage.
  conn.on('error', (err: Error) => {
    if (!down) logger.warn({ redis: site, err: err.message }, 'MQTT session store unreachable: MQTT CONNECT refused until it is back');
    down = true;
  });
  conn.on('close', () => {
    if (!down) logger.warn({ redis: site }, 'MQTT session store disconnected: MQTT CONNECT refused until it is back');
    down = true;
  });
  conn.on('ready', () => {
    if (down) logger.info({ redis: site }, 'MQTT session store reconnected');
    down = false;
  });
  let failure: string | undefined;
  await within(connectWait, conn.connect().catch((err: Error) => (failure = err.message)), () => (failure = `no answer within ${connectWait} ms`));
  if (failure !== undefined) {
    conn.disconnect();
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `FLEETGATE_MQTT_PERSISTENCE: Redis at ${site} is unreachable: ${failure}`);
  }
  down = false;
  const persistence = redisPersistence({ conn });
  return {
    persistence, sessions: (broker) => createRedisSessions(conn, broker), up: () => conn.status === 'ready', close: () => persistence.destroy(),
  };
}
