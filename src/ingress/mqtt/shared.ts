import type { Aedes, AedesPublishPacket, Client, PublishPacket, Subscription } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { filterSubjects, shareQueue } from '../../bus/shared.ts';
import { fail } from '../../errors.ts';
import { canonicalTopic, legacyTopic } from '../../fanout/topic.ts';
import type { Message, Target } from '../../types.ts';
import type { IngressContext } from '../context.ts';
import { onPacketBeforeAedes, type FleetClient } from './client.ts';
import { toBuffer } from './deliver.ts';
import type { Sessions } from './session.ts';

/** [MQTT-4.8.2] `$share/<ShareName>/<filter>` */
const kSharePrefix = '$share/';
/**
 * What a well-formed `$share/` filter is renamed to before aedes sees it: aedes 2.0.0-beta.1 refuses `$share/` from
 * MQTT 5 clients (0x9E) before any hook runs. aedes keeps (and persists) the subscription under this name and routes
 * nothing by it (fleetgate refuses every `$` topic published); the group is served by this module.
 */
const kShared = '$fleetgate-share/';
/** What a malformed one becomes: a filter the subscribe hook refuses, made unique by its index (aedes dedupes by filter). */
const kInvalid = '$fleetgate-invalid/';
/** A client may not name fleetgate's own prefixes itself. */
const kReserved = '$fleetgate-';
/** On the first malformed filter of an MQTT 5 SUBSCRIBE: its packet id, held back so that fleetgate writes the SUBACK. */
const kHeldSuback = Symbol('fleetgate.heldSuback');
/** the client's shared subscriptions, by the name aedes keeps them under */
const kShares = Symbol('fleetgate.shares');
const kReasonTopicFilterInvalid = 0x8f;

type SharingClient = FleetClient & { [kShares]?: Map<string, Member> };
type Deliver = (packet: AedesPublishPacket, done: () => void) => void;

interface Group {
  /** `<ShareName>/<filter as routed>`: the group's identity, the same on every instance */
  readonly share: string;
  /** the filter aedes routes by (canonical or legacy form, see subscribe.ts) */
  readonly filter: string;
  readonly legacy: boolean;
  readonly members: Member[];
  /** round robin position */
  next: number;
  /** what aedes calls for each message this instance routes on the filter */
  readonly local: Deliver;
}

interface Member {
  readonly client: SharingClient;
  readonly group: Group;
  readonly qos: 0 | 1 | 2;
  /** MQTT 5 Retain As Published */
  readonly rap: boolean;
  readonly identifier: number | undefined;
  /** leaves the bus' queue group */
  readonly leave: () => void;
}

/** The parts of a shared filter after its prefix: `<ShareName>/<filter>`, or undefined when malformed [MQTT-4.8.2-1/2]. */
export function parseShare(rest: string): { readonly name: string; readonly filter: string } | undefined {
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return undefined;
  const name = rest.slice(0, slash);
  return name.includes('+') || name.includes('#') ? undefined : { name, filter: rest.slice(slash + 1) };
}

/**
 * MQTT shared subscriptions (`$share/<group>/<filter>`, MQTT 5 §4.8.2, and MQTT 3.1.1 as EMQX and Mosquitto accept
 * them): each message the filter matches goes to one member of the group, round robin, skipping a member whose
 * connection is backed up while another is free. Authorised exactly like the filter they wrap (subscribe.ts). A member
 * leaves with its connection or its UNSUBSCRIBE; nothing is queued for a group without members. Across instances the
 * bus picks the instance (bus/shared.ts): while it carries this instance's messages, members here get messages from
 * it only, so that each message reaches one member of the whole cluster.
 */
export function createSharedSubscriptions({ sharedBus }: IngressContext, sessions: Sessions) {
  const groups = new Map<string, Group>();
  let broker: Aedes | undefined;
  /** the broker id of shared copies: aedes' per-client dedupe would otherwise count them as the member's other copies */
  let copyId = '';

  const pick = (group: Group): Member | undefined => {
    const { members } = group;
    for (let i = 0; i < members.length; i++) {
      const member = members[(group.next + i) % members.length]!;
      if (i === members.length - 1 || !(member.client.conn as { writableNeedDrain?: boolean }).writableNeedDrain) {
        group.next = (group.next + i + 1) % members.length;
        return member;
      }
    }
    return undefined;
  };

  /** One copy to the member: the message's real topic, at the lower of its QoS and the member's. */
  const send = (member: Member, topic: string, payload: Buffer, qos: number, retain: boolean, properties: PublishPacket['properties'], done: () => void): void => {
    const withId = member.identifier === undefined ? properties : { ...properties, subscriptionIdentifier: member.identifier };
    const packet = {
      cmd: 'publish', topic, payload, qos: Math.min(qos, member.qos), retain: retain && member.rap, dup: false, brokerId: copyId, ...(withId && { properties: withId }),
    } as PublishPacket;
    member.client.publish(packet, () => done());
  };

  const arrive = (group: Group) => (message: Message): void => {
    const member = pick(group);
    if (member === undefined) return;
    const { domainId, channelId, subtopic } = message;
    const topic = group.legacy ? legacyTopic(channelId, subtopic) : canonicalTopic(domainId, channelId, subtopic);
    // The QoS the accepting broker published it at (sessions shared in Redis: cluster.ts); else the bus' QoS 0.
    send(member, topic, toBuffer(message.payload), message.mqtt?.qos ?? 0, false, undefined, noop);
  };

  const groupOf = (share: string, filter: string, legacy: boolean): Group => {
    let group = groups.get(share);
    if (group !== undefined) return group;
    const local: Deliver = (packet, done) => {
      const member = sharedBus.carrying ? undefined : pick(group!);
      if (member === undefined) return done();
      send(member, packet.topic, packet.payload as Buffer, packet.qos, packet.retain, packet.properties, done);
    };
    group = { share, filter, legacy, members: [], next: 0, local };
    groups.set(share, group);
    broker?.subscribe(filter, local, noop);
    return group;
  };

  const leave = (client: SharingClient, name: string): void => {
    const member = client[kShares]?.get(name);
    if (member === undefined) return;
    client[kShares]!.delete(name);
    member.leave();
    const { group } = member;
    group.members.splice(group.members.indexOf(member), 1);
    if (group.members.length > 0) return;
    groups.delete(group.share);
    broker?.unsubscribe(group.filter, group.local, noop);
  };

  const leaveAll = (client: SharingClient): void => {
    for (const name of [...(client[kShares]?.keys() ?? [])]) leave(client, name);
  };

  /**
   * Renames the shared filters of a SUBSCRIBE or UNSUBSCRIBE as it is parsed, before aedes handles it (see kShared).
   * A malformed one is refused: SUBACK 0x80, and for MQTT 5 0x8F (Topic Filter invalid), which aedes cannot answer,
   * so fleetgate writes that SUBACK itself once aedes has handled the others (see `bind`).
   */
  function rename(this: { client: SharingClient; settings: { protocolVersion?: number } }, packet: mqttPacket.Packet): void {
    if (packet.cmd === 'unsubscribe') {
      packet.unsubscriptions = packet.unsubscriptions.map((topic) => (topic.startsWith(kSharePrefix) ? kShared + topic.slice(kSharePrefix.length) : topic));
      return;
    }
    if (packet.cmd !== 'subscribe') return;
    packet.subscriptions.forEach((sub, i) => {
      if (sub.topic.charCodeAt(0) !== 36 /* $ */) return;
      const shared = sub.topic.startsWith(kSharePrefix);
      if (shared && parseShare(sub.topic.slice(kSharePrefix.length)) !== undefined) {
        sub.topic = kShared + sub.topic.slice(kSharePrefix.length);
        return;
      }
      if (!shared && !sub.topic.startsWith(kReserved)) return;
      sessions.refused(this.client, 'subscribe', sub.topic, fail('FG_ERR_PARSE_TOPIC', 'a shared subscription is $share/<group>/<filter>, the group not empty and without "/", "+" or "#"'));
      sub.topic = kInvalid + i;
      if (this.settings.protocolVersion === 5 && packet.messageId !== undefined) {
        Object.assign(sub, { [kHeldSuback]: packet.messageId });
        packet.messageId = undefined;
      }
    });
  }

  return {
    /** Registers the broker's events; `broker` routes each group's filter to it. */
    bind(created: Aedes): void {
      broker = created;
      copyId = `${created.id}/shared`;
      advertiseSharedSubscriptions();
      created.on('subscribe', (subs: (Subscription & { [kHeldSuback]?: number })[], client: Client) => {
        const messageId = subs.find((sub) => sub[kHeldSuback] !== undefined)?.[kHeldSuback];
        if (messageId === undefined) return;
        const conn = client.conn as unknown as { writable: boolean; write(bytes: Buffer): boolean };
        const granted = subs.map((sub) => (sub.topic.startsWith(kInvalid) ? kReasonTopicFilterInvalid : sub.qos));
        if (conn.writable) conn.write(mqttPacket.generate({ cmd: 'suback', messageId, granted }, { protocolVersion: 5 }));
      });
      created.on('unsubscribe', (names: string[], client: SharingClient) => {
        for (const name of names) if (name.startsWith(kShared)) leave(client, name);
      });
      created.on('clientDisconnect', leaveAll);
    },
    /** A new connection: its shared filters are renamed as they arrive (before aedes reads its first packet). */
    attach(client: Client): void {
      onPacketBeforeAedes(client, rename);
    },
    /**
     * A subscription as the subscribe hook sees it: `shared` for a (renamed) shared one with its filter to authorise;
     * `refused` for a malformed one (already logged); `plain` otherwise.
     */
    classify(topic: string): { readonly kind: 'shared'; readonly name: string; readonly filter: string } | { readonly kind: 'refused' | 'plain' } {
      if (topic.startsWith(kInvalid)) return { kind: 'refused' };
      if (!topic.startsWith(kShared)) return { kind: 'plain' };
      const share = parseShare(topic.slice(kShared.length));
      return share === undefined ? { kind: 'refused' } : { kind: 'shared', ...share };
    },
    /** An admitted shared subscription (`sub.topic`, renamed) to `filter` (routed form) of a channel: the client joins. */
    join(client: SharingClient, sub: Subscription & { subscriptionIdentifier?: number }, name: string, filter: string, target: Target, channelId: string): void {
      leave(client, sub.topic);
      // gone while it was being authorised: no disconnect event would take it out again
      if ((client as { closed?: boolean }).closed) return;
      const group = groupOf(`${name}/${filter}`, filter, target.domain === null);
      const member: Member = {
        client, group, qos: sub.qos, rap: sub.rap === true, identifier: sub.subscriptionIdentifier,
        leave: sharedBus.join(shareQueue(group.share), filterSubjects(channelId, target.subtopic), arrive(group)),
      };
      group.members.push(member);
      if (client[kShares] === undefined) {
        client[kShares] = new Map();
        // aedes says clientDisconnect only for a client it registered, and a session is restored before that
        (client.conn as unknown as NodeJS.EventEmitter).once('close', () => leaveAll(client));
      }
      client[kShares].set(sub.topic, member);
    },
  };
}

export type SharedSubscriptions = ReturnType<typeof createSharedSubscriptions>;

const kAdvertising = Symbol('fleetgate.advertisingSharedSubscriptions');

/**
 * aedes 2.0.0-beta.1 tells every MQTT 5 client that shared subscriptions are not available (CONNACK property 0x2A = 0)
 * and gives no way to change it: the CONNACK is corrected on its way out, in mqtt-packet, which aedes writes with.
 * Only that property of a CONNACK is touched; every other packet passes as it was.
 */
function advertiseSharedSubscriptions(): void {
  const write = mqttPacket.writeToStream as typeof mqttPacket.writeToStream & { [kAdvertising]?: true };
  if (write[kAdvertising]) return;
  const corrected = ((packet, stream, options) => {
    if (packet.cmd === 'connack' && packet.properties?.sharedSubscriptionAvailable === false) packet.properties.sharedSubscriptionAvailable = true;
    return write(packet, stream, options);
  }) as typeof write;
  // `cacheNumbers` is mqtt-packet's switch for its number cache (MQTT.js sets it): it stays the original's.
  Object.defineProperty(corrected, 'cacheNumbers', Object.getOwnPropertyDescriptor(write, 'cacheNumbers')!);
  corrected[kAdvertising] = true;
  mqttPacket.writeToStream = corrected;
}

function noop(): void {}
