import type { Client, PublishPacket } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { withAllIdentifiers } from './mqtt/subscription-ids.ts';

/** What encode-once delivery reads from an aedes client and the packets it delivers (aedes 2.0.0-beta.1). */
interface DeliveringClient {
  readonly id: string;
  readonly conn: { readonly writable: boolean; readonly writableCorked: number; write(chunk: Buffer): boolean; cork(): void; uncork(): void };
  readonly connecting: boolean;
  readonly connected: boolean;
  readonly errored: boolean;
  readonly duplicates: Record<string, number>;
  readonly _wireVersion: number | null;
  /** the MQTT 5 client's Maximum Packet Size (CONNECT property), if it set one */
  readonly maximumPacketSize?: number;
  deliver0: (packet: ForwardedPacket, done: () => void) => void;
  waitForDrain(done: (err: Error | null) => void): void;
  _onError(err: Error | null): void;
}

interface ForwardedPacket {
  readonly topic: string;
  readonly payload: Buffer;
  readonly retain: boolean;
  readonly properties?: Record<string, unknown>;
  readonly clientId?: string;
  readonly nl?: boolean;
  readonly brokerId?: string;
  readonly brokerCounter: number;
}

/**
 * The last QoS 0 PUBLISH encoded for one wire format. aedes hands a message to its subscribers one after another, so
 * one slot serves them all. The slot is matched on the identity of everything encoded (not on the broker's counter
 * alone), so it can never send another message's bytes: per-subscriber MQTT 5 properties (a subscription identifier)
 * simply miss.
 */
class LastEncoded {
  private readonly options: { readonly protocolVersion: 4 | 5 };
  private topic = '';
  private payload: Buffer | undefined;
  private retain = false;
  private properties: Record<string, unknown> | undefined;
  private bytes: Buffer = Buffer.alloc(0);

  constructor(protocolVersion: 4 | 5) {
    this.options = { protocolVersion };
  }

  of(packet: ForwardedPacket): Buffer {
    // MQTT 3.1 and 3.1.1 PUBLISH carry no properties.
    const properties = this.options.protocolVersion === 5 ? packet.properties : undefined;
    if (packet.payload !== this.payload || packet.topic !== this.topic || packet.retain !== this.retain || properties !== this.properties) {
      const { topic, payload, retain } = packet;
      this.bytes = mqttPacket.generate({ cmd: 'publish', qos: 0, dup: false, retain, topic, payload, ...(properties && { properties }) }, this.options);
      this.topic = topic;
      this.payload = payload;
      this.retain = retain;
      this.properties = properties;
    }
    return this.bytes;
  }
}

/**
 * Delivery callbacks, completed together once the current turn is over. aedes reads a publisher's next packet when
 * every delivery of its last one has completed; completing them synchronously would recurse through the publisher's
 * whole backlog, and aedes' own one setImmediate per delivery costs more than the write.
 */
class Completions {
  private pending: (() => void)[] = [];
  private readonly flush = (): void => {
    const pending = this.pending;
    this.pending = [];
    for (const done of pending) done();
  };

  add(done: () => void): void {
    if (this.pending.push(done) === 1) setImmediate(this.flush);
  }
}

/**
 * Subscribers corked until the current turn of the event loop is over, then uncorked together: what is written to one
 * in that turn leaves in one vectored write. Released at the end of the tick instead, HTTP publishes (one request per
 * tick) cost a syscall per delivery. A subscriber whose buffer passes its high-water mark is released at once, so a
 * flood does not pile up behind the cork and drains as fast as the socket takes it.
 */
class Corks {
  private corked: DeliveringClient['conn'][] = [];
  private readonly flush = (): void => {
    const corked = this.corked;
    this.corked = [];
    for (const conn of corked) release(conn);
  };

  add(conn: DeliveringClient['conn']): void {
    if (conn.writableCorked !== 0) return;
    conn.cork();
    if (this.corked.push(conn) === 1) setImmediate(this.flush);
  }
}

function release(conn: DeliveringClient['conn']): void {
  if (conn.writableCorked !== 0) conn.uncork();
}

/**
 * QoS 0 fan-out that encodes each message once per wire format and writes the same bytes to every subscriber, where
 * aedes builds a packet object and encodes it anew, in five pieces, for each subscriber. It replaces an aedes client's
 * `deliver0` (its QoS 0 delivery, which subscriptions capture when they are made: install it before any). Everything
 * else aedes does on that path is kept: no-local, one copy per client for overlapping subscriptions, the slow-reader
 * drain timeout. QoS 1 deliveries stay with aedes (each carries its own packet id). `delivered` counts each write.
 */
export function encodeOnceDelivery(): (client: Client, delivered: { inc(): void }) => void {
  const encoded = { 4: new LastEncoded(4), 5: new LastEncoded(5) };
  const completions = new Completions();
  const corks = new Corks();
  return (aedesClient, delivered) => {
    const client = aedesClient as unknown as DeliveringClient;
    client.deliver0 = (packet, done) => {
      const { conn } = client;
      if ((packet.nl && packet.clientId === client.id) || !firstCopy(client, packet) || !(client.connecting || client.connected) || !conn.writable) {
        return completions.add(done);
      }
      const v5 = client._wireVersion === 5;
      const bytes = encoded[v5 ? 5 : 4].of(v5 ? withAllIdentifiers(client, packet) : packet);
      if (bytes.length > (client.maximumPacketSize ?? Infinity)) return completions.add(done);
      corks.add(conn);
      delivered.inc();
      if (conn.write(bytes) || client.errored) return completions.add(done);
      release(conn);
      client.waitForDrain((err) => {
        client._onError(err);
        done();
      });
    };
  };
}

/**
 * [MQTT-3.1.2-25] A PUBLISH larger than the Maximum Packet Size a client set is not sent to it (others still get it).
 * For aedes' QoS 1 and 2 path, before it encodes the packet; encode-once delivery compares the bytes it has.
 */
export function tooLargeFor(client: Client, packet: PublishPacket): boolean {
  const limit = (client as unknown as DeliveringClient).maximumPacketSize;
  if (limit === undefined) return false;
  const { topic, payload, retain, qos, properties } = packet;
  // the packet id aedes will assign is two bytes whatever its value
  return mqttPacket.generate({ cmd: 'publish', qos, messageId: 1, dup: false, retain, topic, payload, ...(properties && { properties }) }, { protocolVersion: 5 }).length > limit;
}

/** aedes' dedupe: a client whose subscriptions overlap receives each message once. */
function firstCopy(client: DeliveringClient, packet: ForwardedPacket): boolean {
  const id = packet.brokerId;
  if (id === undefined) return true;
  if ((client.duplicates[id] ?? 0) >= packet.brokerCounter) return false;
  client.duplicates[id] = packet.brokerCounter;
  return true;
}
