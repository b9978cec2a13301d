import type { Message } from '../types.ts';
import { matchesFilter, splitSubtopic } from './topic.ts';

/** Anything that can take a message: a WebSocket today, an MQTT client or a bus bridge later. */
export interface Subscriber {
  /** Must not block or throw: a subscriber that cannot keep up drops itself (fanout never waits). */
  deliver(message: Message): void;
}

interface WildcardFilter {
  readonly levels: readonly string[];
  readonly subscribers: Set<Subscriber>;
}

interface ChannelSubscriptions {
  /** exact subtopic ("" for none) -> subscribers: one Map lookup per message */
  readonly exact: Map<string, Set<Subscriber>>;
  /** filters with "+" or "#", checked level by level */
  readonly wildcard: Map<string, WildcardFilter>;
}

/** Told when a channel gains its first local subscriber and loses its last (the bus subscribes to exactly those). */
export interface Interest {
  want(channelId: string): void;
  unwant(channelId: string): void;
}

/** Every local subscription, by channel. Fan-out cost is the channel's subscribers, not all subscribers. */
export class Subscriptions {
  private readonly byChannel = new Map<string, ChannelSubscriptions>();
  private readonly interest: Interest | undefined;

  constructor(interest?: Interest) {
    this.interest = interest;
  }

  add(channelId: string, filter: string | null, wildcard: boolean, subscriber: Subscriber): void {
    let channel = this.byChannel.get(channelId);
    if (channel === undefined) {
      this.byChannel.set(channelId, (channel = { exact: new Map(), wildcard: new Map() }));
      this.interest?.want(channelId);
    }
    const key = filter ?? '';
    if (wildcard) {
      let entry = channel.wildcard.get(key);
      if (entry === undefined) channel.wildcard.set(key, (entry = { levels: splitSubtopic(filter), subscribers: new Set() }));
      entry.subscribers.add(subscriber);
    } else {
      let set = channel.exact.get(key);
      if (set === undefined) channel.exact.set(key, (set = new Set()));
      set.add(subscriber);
    }
  }

  remove(channelId: string, filter: string | null, wildcard: boolean, subscriber: Subscriber): void {
    const channel = this.byChannel.get(channelId);
    if (channel === undefined) return;
    const key = filter ?? '';
    if (wildcard) {
      const entry = channel.wildcard.get(key);
      if (entry?.subscribers.delete(subscriber) && entry.subscribers.size === 0) channel.wildcard.delete(key);
    } else {
      const set = channel.exact.get(key);
      if (set?.delete(subscriber) && set.size === 0) channel.exact.delete(key);
    }
    if (channel.exact.size === 0 && channel.wildcard.size === 0) {
      this.byChannel.delete(channelId);
      this.interest?.unwant(channelId);
    }
  }

  /** Hands the message to every matching subscriber; returns how many. */
  deliver(message: Message): number {
    const channel = this.byChannel.get(message.channelId);
    if (channel === undefined) return 0;
    let count = 0;
    const exact = channel.exact.get(message.subtopic ?? '');
    if (exact !== undefined) {
      for (const s of exact) {
        s.deliver(message);
        count++;
      }
    }
    if (channel.wildcard.size > 0) {
      const levels = splitSubtopic(message.subtopic);
      for (const entry of channel.wildcard.values()) {
        if (!matchesFilter(entry.levels, levels)) continue;
        for (const s of entry.subscribers) {
          s.deliver(message);
          count++;
        }
      }
    }
    return count;
  }
}
