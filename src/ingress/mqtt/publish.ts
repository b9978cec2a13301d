import type { Duplex } from 'node:stream';
import type { AedesOptions, Client, PublishPacket } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { fail, kErrors, type Failure } from '../../errors.ts';
import { canonicalTopic } from '../../fanout/topic.ts';
import { kPermission } from '../../registry/types.ts';
import type { IngressContext } from '../context.ts';
import { kSession, refusalError, type FleetClient } from './client.ts';
import { toBuffer, type Delivery } from './deliver.ts';
import type { Sessions } from './session.ts';
import { malformedString, parseTopic } from './topic.ts';

type Callback = (error?: Error | null) => void;

/**
 * Refuses a PUBLISH (DESIGN.md §7). MQTT 3.1.1 has no way to say why: the connection is closed. MQTT 5 keeps it and
 * answers a QoS 1 or 2 PUBLISH with the reason code of the refusal (0x87 not authorised, 0x90 topic name invalid, 0x99
 * payload format invalid) and the FG_ERR code as reason string. aedes 2.0.0-beta.1 answers every refusal with 0x87, so
 * fleetgate acknowledges itself and sets the flag aedes reads to drop a PUBLISH it has answered. A will (no `cmd`: it
 * never came as a PUBLISH) is simply not published.
 * A PUBLISH to a `$` topic (`dollar`) is dropped as mosquitto drops one to `$SYS`: MQTT 3.1.1 gets its PUBACK, MQTT 5
 * the reason code alone (Paho's client, which its interoperability suite uses, refuses a PUBACK with properties).
 */
function refusePublish(client: Client, packet: PublishPacket, failure: Failure, callback: Callback, dollar = false): void {
  const error = refusalError(failure);
  const v5 = client.version === 5;
  if (packet.cmd !== 'publish' || (!v5 && !dollar)) return callback(error);
  (packet as { _notAuthorized?: boolean })._notAuthorized = true;
  const conn = client.conn as Duplex;
  if (packet.qos > 0 && conn.writable) {
    const cmd = packet.qos === 1 ? 'puback' : 'pubrec';
    const quiet = dollar || (client as { _requestProblemInformation?: boolean })._requestProblemInformation === false;
    const reason = quiet ? undefined : { reasonString: error.message };
    conn.write(v5
      ? mqttPacket.generate({ cmd, messageId: packet.messageId!, reasonCode: kErrors[failure.code].mqtt5, ...(reason && { properties: reason }) }, { protocolVersion: 5 })
      : mqttPacket.generate({ cmd, messageId: packet.messageId! }, { protocolVersion: 4 }));
  }
  callback(null);
}

/** The will properties that are PUBLISH properties too (MQTT 5 §3.1.3.2, §3.3.2.3). */
const kPublishWillProperties = ['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'userProperties'] as const;

/**
 * A will's properties as its PUBLISH may carry them: the Will Delay Interval (0x18) belongs to the CONNECT only, and
 * Paho's client refuses a PUBLISH that holds it. aedes has read the delay by the time it asks to publish the will.
 * A new object: aedes shares properties objects between packets.
 */
function publishPropertiesOfWill(properties: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const name of kPublishWillProperties) if (properties[name] !== undefined) kept[name] = properties[name];
  return kept;
}

/**
 * aedes' PUBLISH hook (wills too): each PUBLISH is authorised, validated and normalised before aedes routes it, its
 * topic rewritten to the channel's canonical `m/<domain id>/c/<channel id>[/<subtopic>]` so that subscribers using ids
 * or routes meet, plus a legacy-topic copy for legacy subscribers.
 */
export function authorizePublishHook(ctx: IngressContext, sessions: Sessions, delivery: Delivery): NonNullable<AedesOptions['authorizePublish']> {
  const { pipeline, config } = ctx;

  /**
   * A PUBLISH (or will) that ends the connection, never published: MQTT 5 is told with a DISCONNECT (at any QoS; the
   * failure's code is no PUBACK reason code), MQTT 3.1.1 is closed.
   */
  const refuseAndDisconnect = (client: FleetClient, packet: PublishPacket, failure: Failure, callback: Callback): void => {
    sessions.refused(client, 'publish', packet.topic, failure);
    pipeline.rejected('mqtt', failure);
    if (client.version !== 5 || packet.cmd !== 'publish') return callback(refusalError(failure));
    (packet as { _notAuthorized?: boolean })._notAuthorized = true;
    sessions.end(client, failure);
    callback(null);
  };

  /** A refusal found here (topic, rights): counted, logged, answered. Not a closure per PUBLISH: this is the hot path. */
  const refuse = (client: FleetClient, packet: PublishPacket, failure: Failure, callback: Callback, dollar = false): void => {
    sessions.refused(client, 'publish', packet.topic, failure);
    refusePublish(client, packet, pipeline.rejected('mqtt', failure), callback, dollar);
  };

  return (client: FleetClient | null, packet, callback) => {
    // A will (no `cmd`: it never came as a PUBLISH) is published as the packet it is asked about.
    if (packet.cmd !== 'publish' && packet.properties !== undefined) packet.properties = publishPropertiesOfWill(packet.properties);
    // The broker's own publishes (deliver.ts) were checked on their way in.
    if (client === null) return callback(null);
    const session = client[kSession];
    if (session === undefined) return callback(refusalError(fail('FG_ERR_AUTHN_MISSING', 'not authenticated')));
    // The broker's packet limit leaves room for topic and properties; the payload limit is every protocol's.
    if (packet.payload.length > config.maxPayload) {
      return refuseAndDisconnect(client, packet, fail('FG_ERR_PARSE_TOO_LARGE', `payload exceeds ${config.maxPayload} bytes`), callback);
    }
    // [MQTT-1.5.4-1/2] a topic with U+0000 or invalid UTF-8 makes the packet malformed: DISCONNECT 0x81, as mosquitto.
    if (malformedString(packet.topic)) {
      return refuseAndDisconnect(client, packet, fail('FG_ERR_REQUEST_INVALID', 'topic holds U+0000 or invalid UTF-8'), callback);
    }
    if (packet.topic.startsWith('$')) return refuse(client, packet, fail('FG_ERR_AUTHZ_FORBIDDEN', '$ topics are not publishable'), callback, true);
    const target = parseTopic(packet.topic, false, config.mqttMaxTopicLevels);
    if (!target.ok) return refuse(client, packet, target, callback);
    const admission = pipeline.authorizeFor(session.principal, target.value, kPermission.publish);
    if (!admission.ok) return refuse(client, packet, admission, callback);
    if (packet.retain && packet.payload.length === 0) {
      // [MQTT-3.3.1-10] an empty retained PUBLISH clears the topic's retained message: a control, not a message.
      const { channel } = admission.value;
      packet.topic = canonicalTopic(channel.domainId, channel.id, target.value.subtopic);
      delivery.publishLegacy(channel.id, target.value.subtopic, Buffer.alloc(0), packet.qos, true);
      return callback(null);
    }
    const accepted = pipeline.publish(admission.value, 'mqtt', target.value, undefined, packet.payload as Buffer, false);
    if (!accepted.ok) {
      sessions.refused(client, 'publish', packet.topic, accepted);
      return refusePublish(client, packet, accepted, callback);
    }
    // aedes routes the packet on: the normalised payload, on the canonical topic.
    const message = accepted.value;
    packet.topic = canonicalTopic(message.domainId, message.channelId, message.subtopic);
    packet.payload = toBuffer(message.payload);
    delivery.publishLegacy(message.channelId, message.subtopic, packet.payload, packet.qos, packet.retain);
    callback(null);
  };
}
