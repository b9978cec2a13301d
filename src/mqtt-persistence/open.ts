import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config.ts';
import { GatewayError } from '../errors.ts';
import { openSqlitePersistence } from './sqlite.ts';
import { MqttState, type StateOptions } from './state.ts';

type Settings = Pick<GatewayConfig, 'mqttPersistence' | 'store' | 'mqttMaxQueued'>;

/**
 * The SQLite file of FLEETGATE_MQTT_PERSISTENCE: `sqlite:<path>`, or for `sqlite` alone `mqtt.db` beside a SQLite
 * registry store, else (`sqlite::memory:`, PostgreSQL) `./data/mqtt.db`.
 */
function sqlitePath({ mqttPersistence, store }: Settings): string {
  if (mqttPersistence !== 'sqlite') return mqttPersistence.slice('sqlite:'.length);
  const registry = store.startsWith('sqlite:') ? store.slice('sqlite:'.length) : ':memory:';
  return registry === ':memory:' ? join('data', 'mqtt.db') : join(dirname(registry), 'mqtt.db');
}

/**
 * aedes' persistence as FLEETGATE_MQTT_PERSISTENCE names it: `memory` (lost at restart) or SQLite (one instance;
 * survives restarts). Close it with `destroy()` once the broker is closed. `hooks`: what the broker adds (counting
 * dropped messages, which subscriptions may be stored).
 */
export function openMqttPersistence(config: Settings, logger?: Logger, hooks: Omit<StateOptions, 'journal' | 'maxQueued'> = {}): MqttState {
  const options = { ...hooks, maxQueued: config.mqttMaxQueued };
  if (config.mqttPersistence === 'memory') return new MqttState(options);
  if (/^rediss?:/.test(config.mqttPersistence)) {
    throw new GatewayError('FG_ERR_CONFIG_INVALID', 'FLEETGATE_MQTT_PERSISTENCE: redis:// is not available in this build');
  }
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
