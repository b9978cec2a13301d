import { dirname, join } from 'node:path';
import { openSqlitePersistence } from './sqlite.ts';
import { MqttState, type StateOptions } from './state.ts';

/**
 * Where `sqlite` keeps MQTT state: `mqtt.db` beside a SQLite registry store, else (`sqlite::memory:`, PostgreSQL)
 * `./data/mqtt.db`.
 */
export function defaultSqlitePath(store: string): string {
  const registry = store.startsWith('sqlite:') ? store.slice('sqlite:'.length) : ':memory:';
  return registry === ':memory:' ? join('data', 'mqtt.db') : join(dirname(registry), 'mqtt.db');
}

/**
 * aedes' persistence as FLEETGATE_MQTT_PERSISTENCE names it: `memory` (lost at restart), `sqlite:<path>` (one
 * instance; survives restarts). `sqlite` alone is resolved by the caller (defaultSqlitePath).
 */
export function openMqttPersistence(setting: string, options: Omit<StateOptions, 'journal'>): MqttState {
  if (setting === 'memory') return new MqttState(options);
  return openSqlitePersistence(setting.slice('sqlite:'.length), options);
}
