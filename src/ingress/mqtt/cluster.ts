import { decode, encode } from '@msgpack/msgpack';
import type { Aedes } from 'aedes';
import type { Bus } from '../../bus/bus.ts';
import { canonicalTopic } from '../../fanout/topic.ts';
import type { Logger } from '../../log.ts';
import type { Message } from '../../types.ts';
import { toBuffer } from './deliver.ts';

/** A packet as aedes' message emitter (mqemitter) carries it. */
interface EmittedPacket {
  cmd?: string;
  topic: string;
  payload: Buffer | string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  dup?: boolean;
  brokerId?: string;
  brokerCounter?: number;
}

/** The part of aedes' emitter (`broker.mq`) that aedes calls. */
interface Emitter {
  on(topic: string, listener: (packet: EmittedPacket, done: () => void) => void, callback?: () => void): unknown;
  removeListener(topic: string, listener: (packet: EmittedPacket, done: () => void) => void, callback?: () => void): unknown;
  emit(packet: EmittedPacket, callback?: (error?: Error) => void): void;
  close(callback: () => void): void;
}

/** aedes 2.0.0-beta.1 internals its types do not declare. */
type Broker = Aedes & {
  mq: Emitter;
  clients: Record<string, { closed: boolean; disconnect(opts: { reasonCode: number }, done: () => void): void }>;
  /** client ids whose old connection closes because of a takeover: its session is not expired or wiped */
  _takingOver: Set<string>;
  clearSessionExpiry(clientId: string): void;
  clearDelayedWill(clientId: string): void;
};

/** aedes' per-client dedupe: the last broker counter delivered from each broker id */
type DedupingClient = { duplicates: Record<string, number> };

/** A message's identity across instances: the broker that accepted it and its counter there. */
const identity = ({ brokerId, brokerCounter }: EmittedPacket): string => `${brokerId}:${brokerCounter}`;

function seen({ duplicates }: DedupingClient, { brokerId, brokerCounter }: EmittedPacket): void {
  const counter = Number(brokerCounter);
  if (brokerId !== undefined && counter > (duplicates[brokerId] ?? 0)) duplicates[brokerId] = counter;
}

const noop = (): void => {};
const kSessionTakenOver = 0x8e;
/** accepted messages waiting for aedes to queue them, per topic; bounded in case aedes never emits one (a store error) */
const kPendingPerTopic = 64;

/**
 * aedes' `$SYS` news other instances must hear: subscription changes (aedes-persistence-redis keeps its index of
 * persistent subscriptions in each instance's memory and broadcasts changes on `$SYS/sub/+`), heartbeats (a broker
 * publishes the stored wills of brokers it has not heard from) and new clients (takeover).
 */
function bridged(topic: string): boolean {
  return topic === '$SYS/sub/add' || topic === '$SYS/sub/rm' || topic.endsWith('/heartbeat') || topic.endsWith('/new/clients');
}

/**
 * One MQTT broker of several sharing their sessions in Redis, joined to the others over the bus as aedes' own cluster
 * (mqemitter-redis) would be, without a second copy of each message:
 *
 * - A message accepted here (any protocol) runs aedes' publish (retained stored, queued for every persistent
 *   subscription of the cluster, emitted to local clients); when aedes emits it, queueing is done and it goes to the
 *   bus once, with aedes' broker id and counter, QoS and retain flag.
 * - A message from another instance is emitted to local clients only, with the origin's broker id and counter: a
 *   persistent subscriber's delivery and PUBACK then find and clear the copy the origin queued for it.
 * - aedes' `$SYS` news (`bridged` above) travel as bus signals; a new client elsewhere closes this instance's
 *   connection of the same client id (MQTT 5: DISCONNECT 0x8E) and keeps its session for the new one.
 */
export function createClusterBridge(bus: Bus, logger: Logger) {
  let broker: Broker | undefined;
  const pending = new Map<string, Message[]>();
  /** clients whose stored queue is being sent: the live copies sent to them meanwhile */
  const resuming = new WeakMap<object, Set<string>>();

  const sendSignal = (packet: EmittedPacket): void => {
    bus.signal(encode({ b: packet.brokerId, t: packet.topic, p: packet.payload }));
  };

  /** The first message waiting on a topic that `match`es, no longer waiting. */
  const take = (topic: string, match: (message: Message) => boolean): Message | undefined => {
    const waiting = pending.get(topic);
    const at = waiting?.findIndex(match) ?? -1;
    if (at < 0) return undefined;
    const [message] = waiting!.splice(at, 1);
    if (waiting!.length === 0) pending.delete(topic);
    return message;
  };

  /** aedes emits a message it accepted: queueing is done, so the other instances may deliver it now. */
  const sendMessage = (packet: EmittedPacket): void => {
    const payload = packet.payload as Buffer;
    // the same bytes on the same topic: equal payloads are interchangeable
    const message = take(packet.topic, (m) => m.payload === payload || payload.equals(m.payload));
    if (message === undefined) return;
    bus.publish({ ...message, mqtt: { broker: packet.brokerId!, counter: packet.brokerCounter!, qos: packet.qos ?? 0, retain: packet.retain ?? false } });
  };

  /** Another instance has a new client: this instance's connection of that id goes, its session stays for the new one. */
  const takenOver = (clientId: string): void => {
    const b = broker!;
    b.clearSessionExpiry(clientId);
    b.clearDelayedWill(clientId);
    const old = b.clients[clientId];
    if (old === undefined || old.closed) return;
    b._takingOver.add(clientId);
    old.disconnect({ reasonCode: kSessionTakenOver }, () => b._takingOver.delete(clientId));
  };

  const receiveSignal = (bytes: Uint8Array): void => {
    if (broker === undefined) return;
    let signal: { b?: unknown; t?: unknown; p?: unknown };
    try {
      signal = decode(bytes) as typeof signal;
    } catch {
      return logger.warn('bus signal is not a fleetgate signal: ignored');
    }
    const { b, t, p } = signal;
    if (typeof b !== 'string' || typeof t !== 'string' || !bridged(t) || b === broker.id) return;
    const payload = typeof p === 'string' ? Buffer.from(p) : p instanceof Uint8Array ? toBuffer(p) : undefined;
    if (payload === undefined) return;
    if (t.endsWith('/new/clients')) return takenOver(payload.toString('utf8'));
    broker.mq.emit({ cmd: 'publish', topic: t, payload, qos: 0, retain: false, dup: false, brokerId: b, brokerCounter: 0 });
  };

  return {
    /** Joins a broker made with `new Aedes()`, before its `listen()`: its emitter forwards what it originates. */
    bind(created: Aedes): void {
      const b = created as Broker;
      broker = b;
      const local = b.mq;
      b.mq = {
        on: (topic, listener, callback) => local.on(topic, listener, callback),
        removeListener: (topic, listener, callback) => local.removeListener(topic, listener, callback),
        close: (callback) => local.close(callback),
        emit(packet, callback) {
          local.emit(packet, callback);
          if (packet.brokerId !== b.id) return;
          if (packet.topic.startsWith('$SYS/')) {
            if (bridged(packet.topic)) sendSignal(packet);
          } else if (pending.size > 0) {
            sendMessage(packet);
          }
        },
      };
      bus.onSignal(receiveSignal);
    },
    /**
     * The session store aedes is about to be given: a resumed session's queue is read once its channels' bus
     * subscriptions are in effect (asked for as its subscriptions were restored, just before). A message the read
     * misses was queued after it, so sent on the bus after them, and arrives live; read earlier, one accepted elsewhere
     * in between would wait in Redis for the next reconnect. A message read from the queue counts as seen by aedes'
     * per-client dedupe (broker id and counter, as its live deliveries do): its live copy, if it comes too, is not sent.
     * One whose live copy came first is not sent from the queue (see forwardable).
     */
    settleResumes(persistence: { outgoingStream(client: DedupingClient): AsyncIterable<EmittedPacket> }): void {
      const stream = persistence.outgoingStream.bind(persistence);
      persistence.outgoingStream = (client) => (async function* () {
        resuming.set(client, new Set());
        await bus.settled();
        for await (const packet of stream(client)) {
          seen(client, packet);
          yield packet;
        }
      })();
    },
    /** A message accepted here that aedes is about to publish: it goes to the bus when aedes emits it. */
    expect(message: Message): void {
      const topic = canonicalTopic(message.domainId, message.channelId, message.subtopic);
      const waiting = pending.get(topic);
      if (waiting === undefined) pending.set(topic, [message]);
      else if (waiting.push(message) > kPendingPerTopic) waiting.shift();
    },
    /**
     * Asked by authorizeForward for each QoS 1/2 copy it lets through: false for a queued copy (it has a packet id) of a
     * message whose live copy a resuming client was sent while its queue was read. Live copies are noted meanwhile.
     */
    forwardable(client: object, packet: EmittedPacket & { messageId?: number }): boolean {
      const live = resuming.get(client);
      if (live === undefined) return true;
      if (packet.messageId !== undefined) return !live.has(identity(packet));
      live.add(identity(packet));
      return true;
    },
    /** aedes' `clientReady`: the client's stored queue is sent. */
    resumed(client: object): void {
      resuming.delete(client);
    },
    /** A message `expect`ed that aedes could not publish (the session store is down): to the bus as it is. */
    unqueued(message: Message): void {
      if (take(canonicalTopic(message.domainId, message.channelId, message.subtopic), (m) => m === message) !== undefined) bus.publish(message);
    },
    /**
     * A message another instance's broker published, to this instance's online clients only (nothing stored or
     * queued here). false: it carries no broker identity (sent by an instance without shared sessions).
     */
    arrive(message: Message): boolean {
      const origin = message.mqtt;
      if (origin === undefined || broker === undefined) return false;
      broker.mq.emit({
        cmd: 'publish', topic: canonicalTopic(message.domainId, message.channelId, message.subtopic), payload: toBuffer(message.payload),
        qos: origin.qos, retain: origin.retain, dup: false, brokerId: origin.broker, brokerCounter: origin.counter,
      }, noop);
      return true;
    },
  };
}

export type ClusterBridge = ReturnType<typeof createClusterBridge>;
