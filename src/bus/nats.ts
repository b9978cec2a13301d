import { connect, DebugEvents, Events, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from '../log.ts';
import { within } from '../within.ts';
import type { Message } from '../types.ts';
import type { Arrival, Bus } from './bus.ts';
import { decodeEnvelope, encodeEnvelope } from './envelope.ts';
import { channelSubjects, kSignalSubject, subjectOf } from './subject.ts';

/** the most `settled` waits for the server's answer */
const kSettleMs = 1_000;

export interface NatsBusOptions {
  /** nats://host:port[,nats://host:port...] */
  readonly url: string;
  /** names this instance in the server's monitoring */
  readonly name: string;
  readonly logger: Logger;
  /** counts a message sent to the other instances */
  readonly sent: () => void;
  /** counts a message that could not be sent (bus down) */
  readonly dropped: () => void;
}

/**
 * The NATS bus: QoS 0 fan-out between instances on core NATS (no JetStream). `noEcho` keeps an instance's own
 * messages from coming back to it, so nothing is delivered twice. While the connection is down, messages are dropped
 * and counted rather than buffered (nats.js would buffer them without bound until it reconnects). It keeps trying to
 * connect for ever, from the start on, and nats.js re-subscribes the channels when it reconnects.
 */
export function natsBus(options: NatsBusOptions, arrive: Arrival): Bus {
  const { logger } = options;
  let nc: NatsConnection | undefined;
  let connected = false;
  let closed = false;
  /** channel id -> how many local subscribers, and the NATS subscriptions they hold open */
  const interest = new Map<string, { count: number; subs: Subscription[] | undefined }>();
  let signals: ((bytes: Uint8Array) => void) | undefined;
  const subscribeSignals = (conn: NatsConnection): void => {
    if (signals !== undefined) conn.subscribe(kSignalSubject, { callback: (err, msg) => err === null && signals?.(msg.data) });
  };

  const onMessage = (err: Error | null, msg: { data: Uint8Array }): void => {
    if (err !== null) return;
    const message = decodeEnvelope(msg.data);
    if (message === undefined) return logger.warn('bus message is not a fleetgate envelope: ignored');
    arrive(message);
  };
  const subscribe = (conn: NatsConnection, channelId: string): Subscription[] =>
    channelSubjects(channelId).map((subject) => conn.subscribe(subject, { callback: onMessage }));

  // The first connection is retried here rather than by nats.js (waitOnFirstConnect), so that close() can stop it.
  let retry: NodeJS.Timeout | undefined;
  const firstConnect = () => new Promise<void>((resolve) => {
    const attempt = (): void => {
      natsConnect(options.url, options.name, true).then((conn) => {
        if (closed) return void conn.close();
        nc = conn;
        connected = true;
        logger.info({ bus: options.url }, 'bus connected');
        for (const [channelId, entry] of interest) entry.subs = subscribe(conn, channelId);
        subscribeSignals(conn);
        void watch(conn);
        resolve();
      }, (err: Error) => {
        if (closed) return resolve();
        logger.warn({ bus: options.url, err: err.message }, 'bus unreachable: retrying');
        retry = setTimeout(attempt, 1_000);
      });
    };
    attempt();
  });

  async function watch(conn: NatsConnection): Promise<void> {
    for await (const status of conn.status()) {
      if (status.type === Events.Disconnect || status.type === DebugEvents.StaleConnection) {
        if (connected) logger.warn({ bus: options.url }, 'bus disconnected: cross-instance delivery paused, messages for other instances are dropped');
        connected = false;
      } else if (status.type === Events.Reconnect) {
        connected = true;
        logger.info({ bus: options.url }, 'bus reconnected');
      }
    }
  }

  /**
   * This turn's messages, [subject, envelope, ...], published together at its end: nats.js flushes in a microtask, and
   * uWS runs microtasks after every request, so publishing at once cost one write(2) per message (35% of a profile;
   * bench cluster-fanout 0.44 -> 0.82-0.85 with this). One turn's messages leave in one write, in order.
   */
  const outbox: (string | Uint8Array)[] = [];
  function flush(): void {
    for (let i = 0; i < outbox.length; i += 2) {
      // signals are not messages: not counted
      const counted = outbox[i] !== kSignalSubject;
      if (!connected || nc === undefined) {
        if (counted) options.dropped();
        continue;
      }
      try {
        nc.publish(outbox[i] as string, outbox[i + 1] as Uint8Array);
        if (counted) options.sent();
      } catch {
        // over the server's max_payload, or closing
        if (counted) options.dropped();
      }
    }
    outbox.length = 0;
  }

  let started: Promise<void> | undefined;
  return {
    start: () => (started ??= firstConnect()),
    publish(message: Message): void {
      if (!connected || nc === undefined) return options.dropped();
      // Encoded now (the payload may be reused once this call returns), sent with the rest of the turn's.
      if (outbox.length === 0) setImmediate(flush);
      outbox.push(subjectOf(message.domainId, message.channelId, message.subtopic), encodeEnvelope(message));
    },
    signal(bytes: Uint8Array): void {
      if (!connected || nc === undefined) return;
      if (outbox.length === 0) setImmediate(flush);
      outbox.push(kSignalSubject, bytes);
    },
    onSignal(receive: (bytes: Uint8Array) => void): void {
      const first = signals === undefined;
      signals = receive;
      if (first && nc !== undefined) subscribeSignals(nc);
    },
    want(channelId: string): void {
      const entry = interest.get(channelId);
      if (entry !== undefined) entry.count++;
      else interest.set(channelId, { count: 1, subs: nc === undefined ? undefined : subscribe(nc, channelId) });
    },
    unwant(channelId: string): void {
      const entry = interest.get(channelId);
      if (entry === undefined || --entry.count > 0) return;
      interest.delete(channelId);
      for (const sub of entry.subs ?? []) sub.unsubscribe();
    },
    async settled(): Promise<void> {
      // a flush waits out an outage: bounded, as what it guards is a rare race (ingress/mqtt/cluster.ts)
      if (!connected || nc === undefined) return;
      await within(kSettleMs, nc.flush().catch(() => undefined), () => undefined);
    },
    get connected() {
      return connected;
    },
    async close(): Promise<void> {
      // what this turn accepted still goes out
      flush();
      closed = true;
      connected = false;
      clearTimeout(retry);
      interest.clear();
      if (nc !== undefined && !nc.isClosed()) await nc.drain().catch(() => nc!.close());
    },
  };
}

/** One connection to the NATS servers of `url`, reconnecting for ever; `noEcho`: its own messages never come back to it. */
export function natsConnect(url: string, name: string, noEcho: boolean): Promise<NatsConnection> {
  return connect({
    servers: url.split(',').map((s) => s.trim().replace(/^nats:\/\//, '')),
    name,
    noEcho,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    // A dead server is noticed within ~10 s even when no TCP reset arrives.
    pingInterval: 5_000,
    maxPingOut: 2,
    timeout: 2_000,
  });
}
