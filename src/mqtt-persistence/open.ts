import type { AedesPersistence } from 'aedes-persistence';
import type { GatewayConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { createRedisPersistence } from './redis.ts';

/** Where aedes keeps MQTT sessions, QoS 1 queues and retained messages (FLEETGATE_MQTT_PERSISTENCE). */
export interface MqttPersistence {
  /** undefined: aedes' own, in this process's memory */
  readonly persistence: AedesPersistence | undefined;
  /** shared by every instance: the broker joins the others over the bus (ingress/mqtt/cluster.ts) */
  readonly shared: boolean;
  /** false while it cannot be used: MQTT CONNECT is refused and /health/ready answers 503 */
  up(): boolean;
  /** after the broker has closed */
  close(): Promise<void>;
}

export async function openMqttPersistence(config: Pick<GatewayConfig, 'mqttPersistence'>, logger: Logger): Promise<MqttPersistence> {
  if (config.mqttPersistence === 'memory') return { persistence: undefined, shared: false, up: () => true, close: async () => {} };
  return createRedisPersistence(config.mqttPersistence, logger);
}
