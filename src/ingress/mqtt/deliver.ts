import type { Aedes, AedesPublishPacket } from 'aedes';
import { canonicalTopic, legacyTopic } from '../../fanout/topic.ts';
import type { Message } from '../../types.ts';
import type { IngressContext } from '../context.ts';
import { encodeOnceDelivery, tooLargeFor } from '../mqtt-deliver.ts';
import { inflowOf, kDelivered, type FleetClient } from './client.ts';
import { forwarded, installInflightWindow } from './inflight.ts';
import { withAllIdentifiers } from './subscription-ids.ts';
import type { Sessions } from './session.ts';

/**
 * The way out to MQTT subscribers: encode-once QoS 0 delivery and the count of every delivery, the broker's own
 * publishes (legacy-topic copies), and what fan-out calls for messages accepted on other protocols or instances.
 * `bind` gives it the broker, which is created with the hooks that already need it.
 */
export function createDelivery({ logger, metrics, config }: IngressContext, sessions: Sessions) {
  const deliverEncodedOnce = encodeOnceDelivery();
  let broker: Aedes | undefined;

  const brokerPublish = (topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): void => {
    broker?.publish({ cmd: 'publish', qos, dup: false, retain, topic, payload } as AedesPublishPacket, (err?: Error) => {
      if (err) logger.warn({ err: err.message }, 'MQTT fan-out failed');
    });
  };

  /**
   * The copy for legacy (`channels/<id>/messages`) subscribers. A QoS 0 message that is not retained reaches online
   * subscribers only (aedes queues nothing at QoS 0 for offline sessions), so it is skipped when none is online.
   */
  const publishLegacy = (channelId: string, subtopic: string | null, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): void => {
    if (qos === 0 && !retain && !sessions.watchedLegacy(channelId)) return;
    brokerPublish(legacyTopic(channelId, subtopic), payload, qos, retain);
  };

  return {
    bind: (created: Aedes): void => {
      broker = created;
    },
    /** A new connection: its delivery counter, encode-once delivery on its transport, its in-flight window. */
    attach: (client: FleetClient): void => {
      client[kDelivered] = metrics.deliveries(inflowOf(client).transport);
      deliverEncodedOnce(client, client[kDelivered]);
      installInflightWindow(client, config.mqttMaxInflight);
    },
    // QoS 1 and 2 deliveries stay on aedes' path, which asks this once per packet it forwards to a client (QoS 0 is
    // counted by encode-once delivery). Returning nothing drops the packet for this client.
    authorizeForward: (client: FleetClient, packet: AedesPublishPacket): AedesPublishPacket | undefined => {
      withAllIdentifiers(client, packet);
      if (tooLargeFor(client, packet)) return undefined;
      forwarded(client, packet.qos);
      client[kDelivered]?.inc();
      return packet;
    },
    publishLegacy,
    // Messages accepted over HTTP and WebSocket, or by another instance, reach MQTT subscribers at QoS 0: skipped
    // outright for a channel no online MQTT client subscribes to (measured: the unconditional copy cost HTTP publish ~18%
    // of its throughput). MQTT's own messages on this instance are routed by aedes already.
    deliver: (message: Message, routed: boolean): void => {
      if (routed || !sessions.watched(message.channelId)) return;
      const payload = toBuffer(message.payload);
      brokerPublish(canonicalTopic(message.domainId, message.channelId, message.subtopic), payload, 0, false);
      publishLegacy(message.channelId, message.subtopic, payload, 0, false);
    },
  };
}

export type Delivery = ReturnType<typeof createDelivery>;

export function toBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}
