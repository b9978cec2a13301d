import type { Client } from 'aedes';
import type { Packet } from 'mqtt-packet';

/** The MQTT 5 properties each packet a client sends after CONNECT may hold (MQTT 5 §3.3.2.3, §3.8.2.1, §3.10.2.1). */
const kAllowedProperties: Partial<Record<Packet['cmd'], ReadonlySet<string>>> = {
  // no Subscription Identifier: a client's PUBLISH must not hold one [MQTT-3.3.4-6]
  publish: new Set(['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'topicAlias', 'userProperties']),
  subscribe: new Set(['subscriptionIdentifier', 'userProperties']),
  unsubscribe: new Set(['userProperties']),
};

/** What aedes 2.0.0-beta.1 keeps on a client that this reads. */
interface ParsingClient {
  readonly version: number | null;
  readonly _parser: { listeners(event: 'packet'): ((packet: Packet) => void)[]; removeAllListeners(event: 'packet'): void; on(event: 'packet', listener: (packet: Packet) => void): void };
  /** true: the session ends with the connection */
  readonly clean: boolean;
  readonly broker: { readonly persistence: { incomingDelPacket(client: Client, packet: { messageId: number }): Promise<unknown> } };
  disconnect(options: { reasonCode: number; properties?: { reasonString: string } }): void;
  _onError(err: Error): void;
}

/** Why a packet breaks the protocol, as a DISCONNECT reason code (0x81 malformed, 0x82 protocol error) and a short text. */
function violation(packet: Packet, version: number | null): [0x81 | 0x82 | 0x93, string] | undefined {
  const { cmd } = packet;
  if (cmd !== 'publish' && cmd !== 'subscribe' && cmd !== 'unsubscribe') return undefined;
  // [MQTT-2.2.1-3] a PUBLISH at QoS 1 or 2, a SUBSCRIBE and an UNSUBSCRIBE carry a non-zero packet identifier.
  if (packet.messageId === 0 && (cmd !== 'publish' || packet.qos > 0)) return [0x82, 'packet identifier 0'];
  if (version !== 5) return undefined;
  // mqtt-packet reads a v5 PUBLISH that ends before its property length as one without properties.
  if (cmd === 'publish' && packet.payload.length === 0 && packet.length! < 2 + Buffer.byteLength(packet.topic) + (packet.qos > 0 ? 2 : 0) + 1) return [0x81, 'no property length'];
  const allowed = kAllowedProperties[cmd]!;
  for (const name in packet.properties) if (!allowed.has(name)) return [0x82, `${name} in ${cmd.toUpperCase()}`];
  return undefined;
}

/**
 * The client's QoS 2 PUBLISHes not yet released (PUBREL), by packet id: MQTT 5 Receive Maximum, the server's (told in
 * CONNACK), bounds them; one more is DISCONNECT 0x93 [MQTT-3.3.4-8]. QoS 1 ones are acknowledged as they are handled,
 * one at a time.
 */
class ReceiveWindow {
  readonly unreleased = new Set<number>();
  private readonly maximum: number;
  constructor(maximum: number) {
    this.maximum = maximum;
  }

  /** Notes a packet; true when it is a QoS 2 PUBLISH over the maximum, which only binds `limited` (MQTT 5) clients. */
  exceededBy(packet: Packet, limited: boolean): boolean {
    if (packet.cmd === 'pubrel') this.unreleased.delete(packet.messageId!);
    if (packet.cmd !== 'publish' || packet.qos !== 2 || this.unreleased.has(packet.messageId!)) return false;
    if (limited && this.unreleased.size >= this.maximum) return true;
    this.unreleased.add(packet.messageId!);
    return false;
  }
}

const kReceiveWindow = Symbol('fleetgate.receiveWindow');

/**
 * A closed connection whose session ends with it: the QoS 2 PUBLISHes it left unreleased are forgotten. aedes
 * 2.0.0-beta.1 keeps them by client id and packet id, even across a clean start, and took the next session's PUBLISH
 * with a same id for a resent one: acknowledged, never published.
 */
export function forgetUnreleased(aedesClient: Client): void {
  const client = aedesClient as unknown as ParsingClient & { [kReceiveWindow]?: ReceiveWindow };
  const window = client[kReceiveWindow];
  if (window === undefined || window.unreleased.size === 0 || !client.clean) return;
  for (const messageId of window.unreleased) client.broker.persistence.incomingDelPacket(aedesClient, { messageId }).catch(() => undefined);
  window.unreleased.clear();
}

/**
 * Checks each packet a client sends before aedes 2.0.0-beta.1 handles it, for what mqtt-packet accepts and the protocol
 * does not: a packet identifier 0, a property the packet may not hold, a v5 PUBLISH cut before its properties, more
 * unreleased QoS 2 PUBLISHes than `receiveMaximum` (MQTT 5; 0: no limit). Such a packet is not handled: MQTT 5 gets
 * DISCONNECT 0x81, 0x82 or 0x93 (a short reason string), MQTT 3.1.1 is closed.
 */
export function enforcePacketRules(aedesClient: Client, receiveMaximum: number): void {
  const client = aedesClient as unknown as ParsingClient & { [kReceiveWindow]?: ReceiveWindow };
  const parser = client._parser;
  const handlers = parser.listeners('packet');
  const window = new ReceiveWindow(receiveMaximum || 65535);
  client[kReceiveWindow] = window;
  parser.removeAllListeners('packet');
  parser.on('packet', function checked(this: unknown, packet) {
    const broken = violation(packet, client.version) ?? (window.exceededBy(packet, client.version === 5) ? [0x93, 'receive maximum exceeded'] as const : undefined);
    if (broken === undefined) {
      for (const handler of handlers) handler.call(this, packet);
      return;
    }
    // Nothing after it is read: its connection ends.
    parser.removeAllListeners('packet');
    const [reasonCode, reasonString] = broken;
    if (client.version === 5) client.disconnect({ reasonCode, properties: { reasonString } });
    else client._onError(new Error(`protocol violation: ${reasonString}`));
  });
}
