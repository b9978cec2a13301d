import type { Message } from '../types.ts';

/**
 * How accepted messages reach the other gateway instances. `local` (one process) has nothing to do; `nats` publishes
 * each message once and brings the others' in. Every method returns at once: the hot path never waits on the bus.
 */
export interface Bus {
  /** Starts connecting; settles at the first connection (it keeps trying in the background until then). */
  start(): Promise<void>;
  /** Sends a message accepted here to the other instances; counts it as dropped when it cannot. */
  publish(message: Message): void;
  /** This instance has a subscriber on the channel (counted: the first call subscribes). */
  want(channelId: string): void;
  /** ... no longer (the last call unsubscribes). */
  unwant(channelId: string): void;
  /**
   * Resolves once the subscriptions asked for so far are in effect on the bus (NATS: a round trip to the server), so
   * that every message published there from then on reaches this instance; at once while the bus is down.
   */
  settled(): Promise<void>;
  /** Broker state every other instance must see (MQTT subscriptions and takeovers: ingress/mqtt/cluster.ts), in order with the messages. */
  signal(bytes: Uint8Array): void;
  /** Where the other instances' signals go (one receiver). */
  onSignal(receive: (bytes: Uint8Array) => void): void;
  /** false while the bus cannot carry messages (readiness). */
  readonly connected: boolean;
  close(): Promise<void>;
}

/** Messages from other instances, to deliver to this instance's subscribers. */
export type Arrival = (message: Message) => void;

export const localBus: Bus = {
  start: async () => {},
  publish() {},
  want() {},
  unwant() {},
  settled: async () => {},
  signal() {},
  onSignal() {},
  connected: true,
  close: async () => {},
};
