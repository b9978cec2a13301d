import { createHash } from 'node:crypto';
import type { NatsConnection, Subscription } from 'nats';
import type { Logger } from '../log.ts';
import type { Message } from '../types.ts';
import { decodeEnvelope } from './envelope.ts';
import { natsConnect } from './nats.ts';
import { subjectOf } from './subject.ts';

/**
 * How MQTT shared subscription groups (`$share/<group>/<filter>`) get their messages when members sit on several
 * instances: each member joins a NATS queue group named after its share, so that NATS hands each message of the bus to
 * one member's instance, whichever instance accepted it. The queue subscriptions live on a connection of their own
 * that receives this instance's own messages too (the bus' connection does not: noEcho), so a message accepted here
 * may go to a member anywhere, here included, and to exactly one.
 */
export interface SharedBus {
  /**
   * true while messages accepted here go out on the bus, where shared groups take them (through `join`); false when
   * there is no bus or it is down: this instance's members then get this instance's messages straight away.
   */
  readonly carrying: boolean;
  /** One queue member of `queue` on `subjects`; returns its leave. */
  join(queue: string, subjects: readonly string[], arrive: (message: Message) => void): () => void;
  close(): Promise<void>;
}

/** One instance: every group is served locally. */
export const localSharedBus: SharedBus = {
  carrying: false,
  join: () => () => {},
  close: async () => {},
};

export interface NatsSharedBusOptions {
  /** nats://host:port[,nats://host:port...] */
  readonly url: string;
  readonly name: string;
  readonly logger: Logger;
  /** whether the bus carries this instance's messages now (the bus' `connected`) */
  readonly carrying: () => boolean;
}

interface Member {
  readonly queue: string;
  readonly subjects: readonly string[];
  readonly arrive: (message: Message) => void;
  subs: Subscription[] | undefined;
}

/** The NATS side of shared groups. Its connection opens at the first member, and reconnects (nats.js re-subscribes). */
export function natsSharedBus(options: NatsSharedBusOptions): SharedBus {
  const { logger } = options;
  const members = new Set<Member>();
  let nc: NatsConnection | undefined;
  let opening = false;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;

  const subscribe = (conn: NatsConnection, member: Member): void => {
    const callback = (err: Error | null, msg: { data: Uint8Array }): void => {
      const message = err === null ? decodeEnvelope(msg.data) : undefined;
      if (message !== undefined) member.arrive(message);
    };
    member.subs = member.subjects.map((subject) => conn.subscribe(subject, { queue: member.queue, callback }));
  };

  const open = (): void => {
    if (opening || closed) return;
    opening = true;
    natsConnect(options.url, `${options.name} shared`, false).then((conn) => {
      if (closed) return void conn.close();
      nc = conn;
      for (const member of members) subscribe(conn, member);
    }, (err: Error) => {
      opening = false;
      if (closed) return;
      logger.warn({ bus: options.url, err: err.message }, 'bus unreachable for shared subscriptions: retrying');
      retry = setTimeout(open, 1_000);
    });
  };

  return {
    get carrying() {
      return options.carrying();
    },
    join(queue, subjects, arrive) {
      const member: Member = { queue, subjects, arrive, subs: undefined };
      members.add(member);
      if (nc !== undefined) subscribe(nc, member);
      else open();
      return () => {
        members.delete(member);
        for (const sub of member.subs ?? []) sub.unsubscribe();
      };
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      members.clear();
      if (nc !== undefined && !nc.isClosed()) await nc.close();
    },
  };
}

/** The NATS queue group of one share: the same on every instance, and a valid NATS token whatever the group's name. */
export function shareQueue(share: string): string {
  return 'fleetgate-share-' + createHash('sha256').update(share).digest('hex').slice(0, 32);
}

/**
 * The NATS subjects that carry exactly the messages an MQTT filter of one channel matches: `+` is NATS `*`, and `#`
 * is the parent level plus NATS `>` (`#` matches the parent too [MQTT-4.7.1-2]). Subtopic levels are encoded as the
 * bus encodes them (subject.ts); the domain is any (channel ids are unique).
 */
export function filterSubjects(channelId: string, subtopic: string | null): string[] {
  if (subtopic === null) return [subjectOf('*', channelId, null)];
  const levels = subtopic.split('/').map((level) => (level === '+' ? '*' : level === '#' ? '>' : level));
  const subject = subjectOf('*', channelId, levels.join('/'));
  if (levels.at(-1) !== '>') return [subject];
  return [subjectOf('*', channelId, levels.length === 1 ? null : levels.slice(0, -1).join('/')), subject];
}
