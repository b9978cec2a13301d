import type { Aedes, AedesPublishPacket } from 'aedes';
import { canonicalTopic, legacyTopic } from '../../fanout/topic.ts';
import type { MqttState } from '../../mqtt-persistence/state.ts';
import type { Message } from '../../types.ts';
import type { IngressContext } from '../context.ts';
import { encodeOnceDelivery, tooLargeFor } from '../mqtt-deliver.ts';
import { inflowOf, kDelivered, kSession, type FleetClient } from './client.ts';
import type { ClusterBridge } from './cluster.ts';
import { forwarded, installInflightWindow } from './inflight.ts';
import { withAllIdentifiers } from './subscription-ids.ts';
import type { Sessions } from './session.ts';

/**
 * The way out to MQTT subscribers: encode-once QoS 0 delivery and the count of every delivery, the broker's own
 * publishes (legacy-topic copies), and what fan-out calls for messages accepted on other protocols or instances.
 * `bind` gives it the broker, which is created with the hooks that already need it. With sessions shared by the
 * instances (`cluster`), messages reach the bus through the broker (cluster.ts).
 */
export function createDelivery({ logger, metrics, config }: IngressContext, sessions: Sessions, stored: Pick<MqttState, 'matches'> | undefined, cluster?: ClusterBridge) {
  const deliverEncodedOnce = encodeOnceDelivery();
  let broker: Aedes | undefined;

  const brokerPublish = (topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, failed?: () => void): void => {
    broker?.publish({ cmd: 'publish', qos, dup: false, retain, topic, payload } as AedesPublishPacket, (err?: Error) => {
      if (!err) return;
      logger.warn({ err: err.message }, 'MQTT fan-out failed');
      failed?.();
    });
  };

  /**
   * The copy for legacy (`channels/<id>/messages`) subscribers. A message that is not retained reaches online
   * subscribers, and at QoS 1/2 the stored subscriptions of persistent sessions: skipped when neither has one.
   */
  const publishLegacy = (channelId: string, subtopic: string | null, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): void => {
    const topic = legacyTopic(channelId, subtopic);
    if (!retain && !sessions.watchedLegacy(channelId) && (qos === 0 || stored?.matches(topic) === false)) return;
    brokerPublish(topic, payload, qos, retain);
  };

  /** Whether the client still holds a subscription to the channel of a topic (canonical or legacy). */
  const holds = (client: FleetClient, topic: string): boolean => {
    const levels = topic.split('/');
    const channelId = levels[0] === 'm' ? levels[3] : levels[1];
    for (const subscription of client[kSession]?.subscriptions.values() ?? []) if (subscription.channelId === channelId) return true;
    return false;
  };

  return {
    bind: (created: Aedes): void => {
      broker = created;
    },
    /** A new connection: its delivery counter, encode-once delivery on its transport, its in-flight window. */
    attach: (client: FleetClient): void => {
      client[kDelivered] = metrics.deliveries(inflowOf(client).transport);
      deliverEncodedOnce(client, client[kDelivered]);
      installInflightWindow(client, config.mqttMaxInflight, config.mqttMaxQueued, metrics.mqttQueueDropped);
    },
    // QoS 1 and 2 deliveries stay on aedes' path, which asks this once per packet it forwards to a client (QoS 0 is
    // counted by encode-once delivery). Returning nothing drops the packet for this client (and, queued, forgets it).
    authorizeForward: (client: FleetClient, packet: AedesPublishPacket): AedesPublishPacket | undefined => {
      withAllIdentifiers(client, packet);
      if (tooLargeFor(client, packet)) return undefined;
      // A packet id already: a message queued for a persistent session, delivered when its client comes back (live
      // deliveries get theirs after this). Its channel must still be one the client was granted on reconnecting.
      if (packet.messageId !== undefined && !holds(client, packet.topic)) return undefined;
      if (cluster !== undefined && !cluster.forwardable(client, packet)) return undefined;
      forwarded(client, packet.qos);
      client[kDelivered]?.inc();
      return packet;
    },
    publishLegacy,
    // Messages accepted over HTTP and WebSocket are the gateway's: they reach MQTT subscribers at QoS 1 (each subscriber
    // gets the lower of that and its subscription's QoS), so offline persistent sessions queue them. Skipped outright
    // for a channel no online MQTT client subscribes to and no stored subscription matches, both answered from memory
    // (measured: the unconditional copy cost HTTP publish ~18% of its throughput). MQTT's own messages on this instance
    // are routed by aedes already.
    // Sessions shared by the instances (Redis): every message accepted here goes through aedes at QoS 1, so that
    // persistent sessions anywhere queue it, and reaches the bus once queued (true: fan-out must not send it).
    deliver: (message: Message, routed: boolean): boolean => {
      if (cluster !== undefined) {
        cluster.expect(message);
        // not queued (the session store is down): the other instances' online subscribers still get it
        if (!routed) publishAll(message, 1, () => cluster.unqueued(message));
        return true;
      }
      if (routed) return false;
      const topic = canonicalTopic(message.domainId, message.channelId, message.subtopic);
      const payload = toBuffer(message.payload);
      if (sessions.watched(message.channelId) || stored?.matches(topic) === true) brokerPublish(topic, payload, 1, false);
      publishLegacy(message.channelId, message.subtopic, payload, 1, false);
      return false;
    },
    /**
     * A message another instance accepted: to online subscribers here (legacy copies at QoS 0, not queued). Sessions
     * kept on this instance only (SQLite, memory) do not queue it: queues that follow a device across instances need
     * Redis.
     */
    arrive: (message: Message): void => {
      if (!sessions.watched(message.channelId)) return;
      if (cluster?.arrive(message) !== true) return publishAll(message, 0);
      if (sessions.watchedLegacy(message.channelId)) publishLegacy(message.channelId, message.subtopic, toBuffer(message.payload), 0, false);
    },
  };

  function publishAll(message: Message, qos: 0 | 1, failed?: () => void): void {
    const payload = toBuffer(message.payload);
    brokerPublish(canonicalTopic(message.domainId, message.channelId, message.subtopic), payload, qos, false, failed);
    publishLegacy(message.channelId, message.subtopic, payload, qos, false);
  }
}

export type Delivery = ReturnType<typeof createDelivery>;

export function toBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}
