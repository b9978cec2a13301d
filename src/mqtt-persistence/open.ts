import { dirname, join } from 'node:path';
import type { AedesPersistence } from 'aedes-persistence';
import type { GatewayConfig } from '../config.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createRedisPersistence } from './redis.ts';
import type { RedisSessions } from './redis-sessions.ts';
import { openSqlitePersistence } from './sqlite.ts';
import { MqttState, type StateOptions } from './state.ts';

type Settings = Pick<GatewayConfig, 'mqttPersistence' | 'store' | 'mqttMaxQueued'>;

/** Where aedes keeps MQTT sessions, QoS 1 queues and retained messages (FLEETGATE_MQTT_PERSISTENCE). */
export interface MqttPersistence {
  readonly persistence: AedesPersistence;
  /** this process's own state (memory, SQLite), read from memory; undefined when shared (Redis) */
  readonly local?: MqttState;
  /**
   * Only when shared by every instance (the broker then joins the others over the bus, ingress/mqtt/cluster.ts):
   * session expiry and counts kept in the shared store, for the broker of that id.
   */
  readonly sessions?: (brokerId: string) => RedisSessions;
  /** false while it cannot be used: MQTT CONNECT is refused and /health/ready answers 503 */
  up(): boolean;
  /** after the broker has closed: what is left is written */
  close(): Promise<void>;
}

/**
 * The SQLite file of FLEETGATE_MQTT_PERSISTENCE: `sqlite:<path>`, or for `sqlite` alone `mqtt.db` beside a SQLite
 * registry store, else (`sqlite::memory:`, PostgreSQL) `./data/mqtt.db`.
 */
function sqlitePath({ mqttPersistence, store }: Settings): string {
  if (mqttPersistence !== 'sqlite') return mqttPersistence.slice('sqlite:'.length);
  const registry = store.startsWith('sqlite:') ? store.slice('sqlite:'.length) : ':memory:';
  return registry === ':memory:' ? join('data', 'mqtt.db') : join(dirname(registry), 'mqtt.db');
}

/** This process's own MQTT state: in memory, or loaded from and written to SQLite. */
export function openLocalState(config: Settings, options: Omit<StateOptions, 'journal'> = { maxQueued: config.mqttMaxQueued }, logger?: Logger): MqttState {
  if (config.mqttPersistence === 'memory') return new MqttState(options);
  const path = sqlitePath(config);
  let state: MqttState;
  try {
    state = openSqlitePersistence(path, options, (err) => logger?.error({ err, path }, 'MQTT state not written'));
  } catch (err) {
    const { code, message } = err as { code?: unknown; message?: string };
    if (typeof code !== 'string') throw err;
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `FLEETGATE_MQTT_PERSISTENCE: cannot open ${path}: ${message}`);
  }
  logger?.info({ path, sessions: state.sessions.size, retained: state.retained.size, queued: state.queued }, 'MQTT state loaded');
  return state;
}

/**
 * aedes' persistence as FLEETGATE_MQTT_PERSISTENCE names it: `memory` (lost at restart), SQLite (one instance;
 * survives restarts) or Redis (shared by the instances). `hooks`: what the broker adds to a local one (counting
 * dropped messages, which subscriptions may be stored).
 */
export async function openMqttPersistence(config: Settings, logger: Logger, hooks: Omit<StateOptions, 'journal' | 'maxQueued'> = {}): Promise<MqttPersistence> {
  if (/^rediss?:/.test(config.mqttPersistence)) return createRedisPersistence(config.mqttPersistence, logger);
  const local = openLocalState(config, { ...hooks, maxQueued: config.mqttMaxQueued }, logger);
  return { persistence: local as unknown as AedesPersistence, local, up: () => true, close: () => local.destroy() };
}
