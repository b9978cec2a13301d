import { createRequire } from 'node:module';
import { Readable } from 'node:stream';

/** An MQTT packet as aedes hands it to its persistence (aedes-packet, plus what aedes 2 adds). */
export interface StoredPacket {
  cmd: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  dup: boolean;
  messageId?: number | undefined;
  brokerId?: string;
  brokerCounter?: number;
  properties?: Record<string, unknown>;
  /** MQTT 5 Message Expiry Interval as an absolute time (ms), set by aedes 2 */
  messageExpiry?: number;
  clientId?: string;
  [key: string]: unknown;
}

export interface SubscriptionRecord {
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
  subscriptionIdentifier?: number;
}

type Subscription = SubscriptionRecord & { topic: string };
type ClientRef = { id: string };
type Match = { clientId: string; topic: string; qos: number };

interface Trie {
  add(topic: string, value: object): void;
  remove(topic: string, value: object): void;
  match(topic: string): Match[];
  test(topic: string, value?: unknown): boolean;
  subscriptionsCount: number;
}

/**
 * Where the state's changes go to outlast the process (sqlite.ts). Each write names one row; `committed()` resolves
 * once every write made so far is stored, which is when aedes may acknowledge what depended on it.
 */
export interface Journal {
  put(table: Table, key: string, value: unknown, fresh?: boolean): void;
  del(table: Table, key: string): void;
  committed(): Promise<void>;
  close(): void;
}

export type Table = 'retained' | 'subscriptions' | 'outgoing' | 'incoming' | 'wills' | 'sessions';

/** A stored session: how long it outlives its connection, and (while offline) when it expires (ms; 0: online). */
export interface SessionRecord {
  interval: number;
  expiresAt: number;
}

export interface StateOptions {
  /** queued messages kept per client; beyond it the oldest is dropped (Mosquitto `max_queued_messages`); 0: no limit */
  maxQueued: number;
  /** a message dropped from a client's full queue */
  onDropped?: (clientId: string, packet: StoredPacket) => void;
  /**
   * Whether a subscription may be stored. aedes stores every filter of a SUBSCRIBE each time one of them is granted,
   * refused ones too: the broker keeps only those it admitted.
   */
  admit?: (client: object, subscription: { topic: string }) => boolean;
  /** where changes are written (sqlite.ts); none: memory only */
  journal?: Journal;
}

const require = createRequire(import.meta.url);
const QlobberSub = require('qlobber/aedes/qlobber-sub') as new (options: object) => Trie;
const { QlobberTrue } = require('qlobber') as { QlobberTrue: new (options: object) => Trie };
/** aedes' packet copy: its fields, with no packet id for QoS > 0 */
const Packet = require('aedes-packet') as new (packet: object) => StoredPacket;
const kTrieOptions = { wildcard_one: '+', wildcard_some: '#', separator: '/' };
const kStored = Promise.resolve();

/**
 * What a stream answer known to be empty is (idle memory, issue 15): aedes asks for a client's queue on every CONNECT,
 * clean sessions included, and for retained messages on every SUBSCRIBE, and pipes each answer into a Transform of its
 * own. An ended stream whose pipe() just ends the destination spares the iterator machinery of `Readable.from` and the
 * listeners and closures of a real pipe.
 */
class Nothing extends Readable {
  constructor() {
    // as Readable.from's
    super({ objectMode: true, highWaterMark: 1 });
    this.push(null);
  }

  override _read(): void {}

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    // flowing, it says 'end' (which stream.pipeline waits for, as it pipes with `end: false`)
    this.resume();
    if (options?.end !== false) destination.end();
    return destination;
  }
}

/** A queued delivery and the key it is stored under. */
interface Queued {
  readonly key: string;
  packet: StoredPacket;
}

/** A packet's own data, without the functions aedes hangs on its packets (they cannot be stored). */
function dataOf(packet: StoredPacket): StoredPacket {
  const data: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(packet)) if (typeof value !== 'function') data[name] = value;
  return data as StoredPacket;
}

/** aedes' copy of a packet, keeping its packet id (aedes-packet clears it). */
function copyWithId(packet: StoredPacket): StoredPacket {
  const copy = new Packet(packet);
  copy.messageId = packet.messageId;
  return copy;
}

const subKey = (clientId: string, topic: string): string => JSON.stringify([clientId, topic]);
const incomingKey = (clientId: string, messageId: number | undefined): string => JSON.stringify([clientId, messageId]);

/**
 * aedes' persistence (aedes-persistence 10.3 async API, as aedes 2.0.0-beta.1 calls it), held in memory like
 * aedes-persistence's own: matching subscriptions and retained messages never waits for a disk. With a journal, every
 * change is also written there (sqlite.ts) and the state is loaded from it at start. Adds what the gateway needs: a
 * synchronous `matches()` for fan-out, a bound on each client's queue, and session expiry that outlasts restarts.
 */
export class MqttState {
  readonly retained = new Map<string, StoredPacket>();
  readonly subscriptions = new Map<string, Map<string, SubscriptionRecord>>();
  readonly outgoing = new Map<string, Queued[]>();
  readonly incoming = new Map<string, Map<number | undefined, StoredPacket>>();
  readonly wills = new Map<string, StoredPacket>();
  readonly sessions = new Map<string, SessionRecord>();
  /** messages in every queue */
  queued = 0;
  private readonly trie = new QlobberSub(kTrieOptions);
  private broker: { id: string } | undefined;
  private nextKey = 0;
  private destroyed = false;
  private readonly options: StateOptions;
  private readonly journal: Journal | undefined;

  constructor(options: StateOptions) {
    this.options = options;
    this.journal = options.journal;
  }

  async setup(broker: { id: string }): Promise<void> {
    this.broker = broker;
  }

  /** true when a stored subscription of QoS 1 or 2 matches the topic: a message on it would be queued. */
  matches(topic: string): boolean {
    return this.trie.subscriptionsCount > 0 && this.trie.match(topic).length > 0;
  }

  /** A client's queue, made when it has none. */
  private queueOf(clientId: string): Queued[] {
    let queue = this.outgoing.get(clientId);
    if (queue === undefined) this.outgoing.set(clientId, (queue = []));
    return queue;
  }

  /** A client's received QoS 2 packets, made when it has none. */
  private incomingOf(clientId: string): Map<number | undefined, StoredPacket> {
    let stored = this.incoming.get(clientId);
    if (stored === undefined) this.incoming.set(clientId, (stored = new Map()));
    return stored;
  }

  private put(table: Table, key: string, value: unknown, fresh?: boolean): void {
    this.journal?.put(table, key, value, fresh);
  }

  private del(table: Table, key: string): void {
    this.journal?.del(table, key);
  }

  /**
   * Waited for by what adds a message or a subscription (queued and retained messages, subscriptions before their
   * SUBACK, QoS 2 packets before their PUBREC), which also holds a publisher's next packets back while a flood's writes
   * catch up. aedes acknowledges a QoS 1 PUBLISH before routing it, so that PUBACK does not wait (docs/MQTT.md). Other
   * writes (a packet id, an acknowledgement, a removal) are not waited for: lost, a message is sent once more.
   */
  private committed(): Promise<void> {
    return this.journal === undefined ? kStored : this.journal.committed();
  }

  // Retained messages

  storeRetained(packet: StoredPacket): Promise<void> {
    if (packet.payload.length === 0) {
      this.retained.delete(packet.topic);
      this.del('retained', packet.topic);
      return this.committed();
    }
    const copy = { ...packet };
    this.retained.set(packet.topic, copy);
    this.put('retained', packet.topic, copy);
    return this.committed();
  }

  createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern]);
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    if (this.retained.size === 0) return new Nothing();
    const found: StoredPacket[] = [];
    for (const pattern of patterns) {
      const filter = new QlobberTrue(kTrieOptions);
      filter.add(pattern, {});
      for (const [topic, packet] of this.retained) if (filter.test(topic)) found.push(packet);
    }
    return found.length === 0 ? new Nothing() : Readable.from(found);
  }

  // Subscriptions of persistent sessions

  /** Loads or adds subscriptions; only QoS 1 and 2 ones enter the trie (QoS 0 messages are never queued). */
  private subscribe(clientId: string, topic: string, record: SubscriptionRecord): void {
    let stored = this.subscriptions.get(clientId);
    if (stored === undefined) this.subscriptions.set(clientId, (stored = new Map()));
    if (record.qos > 0) this.trie.add(topic, { clientId, topic, qos: record.qos, rh: record.rh, rap: record.rap, nl: record.nl });
    else if ((stored.get(topic)?.qos ?? 0) > 0) this.trie.remove(topic, { clientId, topic });
    stored.set(topic, record);
  }

  async addSubscriptions(client: ClientRef, subs: Subscription[]): Promise<void> {
    const { admit } = this.options;
    for (const { topic, qos, rh, rap, nl, subscriptionIdentifier } of admit === undefined ? subs : subs.filter((sub) => admit(client, sub))) {
      const record: SubscriptionRecord = { qos, rh, rap, nl, ...(subscriptionIdentifier !== undefined && { subscriptionIdentifier }) };
      this.subscribe(client.id, topic, record);
      this.put('subscriptions', subKey(client.id, topic), { clientId: client.id, topic, record });
    }
    await this.committed();
  }

  async removeSubscriptions(client: ClientRef, topics: string[]): Promise<void> {
    const stored = this.subscriptions.get(client.id);
    if (stored === undefined) return;
    for (const topic of topics) {
      const record = stored.get(topic);
      if (record === undefined) continue;
      if (record.qos > 0) this.trie.remove(topic, { clientId: client.id, topic });
      stored.delete(topic);
      this.del('subscriptions', subKey(client.id, topic));
    }
    if (stored.size === 0) this.subscriptions.delete(client.id);
  }

  async subscriptionsByClient(client: ClientRef): Promise<Subscription[]> {
    return [...(this.subscriptions.get(client.id) ?? [])].map(([topic, record]) => ({ topic, ...record }));
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return { subsCount: this.trie.subscriptionsCount, clientsCount: this.subscriptions.size };
  }

  async subscriptionsByTopic(topic: string): Promise<Match[]> {
    return this.trie.match(topic);
  }

  async cleanSubscriptions(client: ClientRef): Promise<void> {
    await this.removeSubscriptions(client, [...(this.subscriptions.get(client.id)?.keys() ?? [])]);
  }

  getClientList(topic: string): Readable {
    const clients = [...this.subscriptions].filter(([, stored]) => stored.has(topic)).map(([clientId]) => clientId);
    return Readable.from(clients);
  }

  // Queued deliveries (QoS 1 and 2) of persistent sessions

  private enqueue(clientId: string, packet: StoredPacket): void {
    const queue = this.queueOf(clientId);
    const limit = this.options.maxQueued;
    if (limit > 0 && queue.length >= limit) {
      // Mosquitto's max_queued_messages drops the new message; fleetgate keeps the newest, as the issue asks.
      const dropped = queue.shift()!;
      this.queued--;
      this.options.onDropped?.(clientId, dropped.packet);
      this.del('outgoing', dropped.key);
    }
    const entry: Queued = { key: `${this.nextKey++}`, packet: new Packet(packet) };
    queue.push(entry);
    this.queued++;
    this.put('outgoing', entry.key, { clientId, seq: entry.key, packet: entry.packet }, true);
  }

  async outgoingEnqueue(sub: ClientRef | { clientId: string }, packet: StoredPacket): Promise<void> {
    this.enqueue('clientId' in sub ? sub.clientId : sub.id, packet);
    await this.committed();
  }

  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    for (const sub of subs) this.enqueue(sub.clientId, packet);
    await this.committed();
  }

  /**
   * A queued packet got its packet id (it is being sent), or became a PUBREL: matched as aedes-persistence does, but
   * from the newest (a live delivery updates what was just queued), where acknowledgements (below) clear the oldest.
   * Both stay O(1) while a subscriber has thousands in flight; from the other end each would scan them all.
   */
  async outgoingUpdate(client: ClientRef, packet: StoredPacket): Promise<void> {
    const queue = this.outgoing.get(client.id) ?? [];
    for (let i = queue.length - 1; i >= 0; i--) {
      const entry = queue[i]!;
      const queued = entry.packet;
      if (queued.brokerId === packet.brokerId) {
        if (queued.brokerCounter !== packet.brokerCounter) continue;
        queued.messageId = packet.messageId;
      } else if (queued.messageId === packet.messageId) {
        // aedes hands its own packet (a PUBREL, or a PUBLISH with its write callback): its data is kept
        entry.packet = dataOf(packet);
      } else {
        continue;
      }
      this.put('outgoing', entry.key, { clientId: client.id, seq: entry.key, packet: entry.packet });
      return;
    }
    // A live delivery whose stored copy a full queue dropped after aedes took it to send (it sends on the next turn):
    // it still reaches the online client, unstored. aedes would close the connection on the error.
    if (packet.brokerId !== undefined) return;
    throw new Error('no such packet');
  }

  async outgoingClearMessageId(client: ClientRef, packet: { messageId?: number | undefined }): Promise<StoredPacket | undefined> {
    const queue = this.outgoing.get(client.id);
    const at = queue?.findIndex((entry) => entry.packet.messageId === packet.messageId) ?? -1;
    if (at < 0) return undefined;
    const [entry] = queue!.splice(at, 1);
    this.queued--;
    if (queue!.length === 0) this.outgoing.delete(client.id);
    this.del('outgoing', entry!.key);
    return entry!.packet;
  }

  outgoingStream(client: ClientRef): Readable {
    const queue = this.outgoing.get(client.id);
    return queue === undefined || queue.length === 0 ? new Nothing() : Readable.from(queue.map((entry) => entry.packet));
  }

  // Received QoS 2 packets awaiting their PUBREL

  async incomingStorePacket(client: ClientRef, packet: StoredPacket): Promise<void> {
    const copy = copyWithId(packet);
    this.incomingOf(client.id).set(packet.messageId, copy);
    this.put('incoming', incomingKey(client.id, packet.messageId), { clientId: client.id, packet: copy });
    await this.committed();
  }

  async incomingGetPacket(client: ClientRef, packet: { messageId?: number | undefined }): Promise<StoredPacket> {
    const stored = this.incoming.get(client.id)?.get(packet.messageId);
    if (stored === undefined) throw new Error('no such packet');
    return stored;
  }

  async incomingDelPacket(client: ClientRef, packet: { messageId?: number | undefined }): Promise<void> {
    const stored = this.incoming.get(client.id);
    if (stored?.delete(packet.messageId) !== true) throw new Error('no such packet');
    if (stored.size === 0) this.incoming.delete(client.id);
    this.del('incoming', incomingKey(client.id, packet.messageId));
  }

  // Wills

  async putWill(client: ClientRef, packet: StoredPacket): Promise<void> {
    packet.brokerId = this.broker?.id;
    packet.clientId = client.id;
    this.wills.set(client.id, packet);
    this.put('wills', client.id, packet);
  }

  async getWill(client: ClientRef): Promise<StoredPacket | undefined> {
    return this.wills.get(client.id);
  }

  async delWill(client: ClientRef): Promise<StoredPacket | undefined> {
    const will = this.wills.get(client.id);
    if (will === undefined) return undefined;
    this.wills.delete(client.id);
    this.del('wills', client.id);
    return will;
  }

  streamWill(brokers: Record<string, unknown> = {}): Readable {
    return Readable.from([...this.wills.values()].filter((will) => brokers[will.brokerId as string] === undefined));
  }

  // Sessions: how long each persistent session outlives its connection (not part of aedes' interface)

  /**
   * A client is online: with a persistent session that will outlive its connection by `interval` s (0: for ever),
   * which no longer expires meanwhile; or (undefined) with a session that ends with its connection.
   */
  sessionOnline(clientId: string, interval: number | undefined): void {
    if (interval === undefined) {
      if (this.sessions.delete(clientId)) this.del('sessions', clientId);
      return;
    }
    const record = { interval, expiresAt: 0 };
    this.sessions.set(clientId, record);
    this.put('sessions', clientId, record);
  }

  /** A persistent session's connection ended (or was lost with the process): it expires `interval` s from now. */
  sessionOffline(clientId: string, interval?: number, now = Date.now()): void {
    const record = this.sessions.get(clientId);
    if (record === undefined) return;
    record.interval = interval ?? record.interval;
    record.expiresAt = record.interval === 0 ? 0 : now + record.interval * 1000;
    this.put('sessions', clientId, record);
  }

  /** Sessions whose expiry has passed (offline ones only). */
  expired(now = Date.now()): string[] {
    return [...this.sessions].filter(([, { expiresAt }]) => expiresAt !== 0 && expiresAt <= now).map(([clientId]) => clientId);
  }

  /** Ends a session: its subscriptions, queue, half-received QoS 2 packets and will. */
  async forget(clientId: string): Promise<void> {
    const client = { id: clientId };
    for (const entry of this.outgoing.get(clientId) ?? []) this.del('outgoing', entry.key);
    this.queued -= this.outgoing.get(clientId)?.length ?? 0;
    this.outgoing.delete(clientId);
    for (const messageId of this.incoming.get(clientId)?.keys() ?? []) this.del('incoming', incomingKey(clientId, messageId));
    this.incoming.delete(clientId);
    if (this.sessions.delete(clientId)) this.del('sessions', clientId);
    await Promise.all([this.cleanSubscriptions(client), this.delWill(client)]);
  }

  // Loading what a journal kept (sqlite.ts)

  load(table: Table, key: string, value: unknown): void {
    switch (table) {
      case 'retained':
        this.retained.set(key, value as StoredPacket);
        return;
      case 'subscriptions': {
        const { clientId, topic, record } = value as { clientId: string; topic: string; record: SubscriptionRecord };
        return this.subscribe(clientId, topic, record);
      }
      case 'outgoing': {
        const { clientId, packet } = value as { clientId: string; packet: StoredPacket };
        // [MQTT-4.4.0-1] a packet that had its id was (maybe) sent before the restart: it is sent again with DUP set.
        if (packet.cmd === 'publish' && packet.messageId !== undefined) packet.dup = true;
        this.queueOf(clientId).push({ key, packet: copyWithId(packet) });
        this.nextKey = Math.max(this.nextKey, Number(key) + 1);
        this.queued++;
        return;
      }
      case 'incoming': {
        const { clientId, packet } = value as { clientId: string; packet: StoredPacket };
        this.incomingOf(clientId).set(packet.messageId, packet);
        return;
      }
      case 'wills':
        this.wills.set(key, value as StoredPacket);
        return;
      case 'sessions':
        this.sessions.set(key, value as SessionRecord);
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) throw new Error('destroyed called twice!');
    this.destroyed = true;
    this.journal?.close();
  }
}
