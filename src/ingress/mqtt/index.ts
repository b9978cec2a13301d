import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type Client } from 'aedes';
import type { PeerCertificate } from '../../auth/certificate.ts';
import type { Bus } from '../../bus/bus.ts';
import { openMqttPersistence } from '../../mqtt-persistence/open.ts';
import type { IngressContext } from '../context.ts';
import { MqttInflow } from '../mqtt-inflow.ts';
import { WsDuplex } from '../ws-duplex.ts';
import { inflowOf, kDropped, kSession, lightenParser, onPacketBeforeAedes, trimConnected, type FleetClient } from './client.ts';
import { createClusterBridge } from './cluster.ts';
import { connectHooks } from './connect.ts';
import { createDelivery } from './deliver.ts';
import { disconnectFromConnack } from './disconnect.ts';
import { acked, forgetWaiting } from './inflight.ts';
import { enforcePacketRules, forgetUnreleased } from './packet-rules.ts';
import { authorizePublishHook } from './publish.ts';
import { queueDelivered } from './resume.ts';
import { createSessions } from './session.ts';
import { createSharedSubscriptions } from './shared.ts';
import { keepSharedSessions, keepStoredSessions } from './stored-sessions.ts';
import { authorizeSubscribeHook, routeUnsubscribes } from './subscribe.ts';

/**
 * MQTT 3.1.1 and 5 on aedes, with the same auth engine, pipeline and fan-out as HTTP and WebSocket, cut by packet as
 * aedes is: CONNECT (connect.ts), PUBLISH (publish.ts), SUBSCRIBE (subscribe.ts; shared subscriptions: shared.ts), the
 * sessions of online clients (session.ts) and the way out to subscribers (deliver.ts). Messages accepted on other
 * protocols reach MQTT subscribers through fan-out (fanout/fanout.ts), which calls `deliver`. Sessions kept in Redis are
 * shared with the other instances over the bus (cluster.ts).
 * Where aedes 2.0.0-beta.1 falls short of MQTT 5: packet-rules.ts (malformed packets, the server's Receive Maximum),
 * inflight.ts (the client's), resume.ts, subscription-ids.ts, disconnect.ts.
 */
export async function startMqtt(ctx: IngressContext, bus: Bus) {
  const { logger, metrics, config } = ctx;
  const gauges = { mqtt: metrics.connections('mqtt'), 'mqtt-ws': metrics.connections('mqtt-ws') };
  const sessions = createSessions(ctx);
  // Only subscriptions the client was granted are stored (subscribe.ts names them by their canonical filter).
  const stored = await openMqttPersistence(config, logger, {
    onDropped: (clientId, packet) => {
      metrics.mqttQueueDropped();
      // an online client's delivery waiting for its window must not be sent: its stored copy is gone
      forgetWaiting(internals.clients[clientId], packet);
    },
    admit: (client, sub) => (client as FleetClient)[kSession]?.subscriptions.has(sub.topic) === true,
  });
  const cluster = stored.sessions !== undefined ? createClusterBridge(bus, logger) : undefined;
  cluster?.settleResumes(stored.persistence as unknown as Parameters<typeof cluster.settleResumes>[0]);
  const delivery = createDelivery(ctx, sessions, stored.local, cluster);
  const shares = createSharedSubscriptions(ctx, sessions);
  const routeUnsubscribe = routeUnsubscribes(ctx);

  const broker = new Aedes({
    persistence: stored.persistence,
    sessionExpiryIntervalLimit: config.mqttSessionExpiryMax,
    connectTimeout: config.mqttConnectTimeout,
    keepaliveLimit: config.mqttKeepaliveLimit,
    drainTimeout: config.mqttDrainTimeout,
    // No mqemitter queue: with one (concurrency > 0) a long queue of deliveries that complete synchronously recurses
    // once per message and overflows the stack under overload (mqemitter 7.1, aedes#193; reproduced by the overload
    // test). In-flight work stays bounded anyway: aedes reads a client's next buffer only when its last batch is done.
    concurrency: 0,
    // Topic levels are limited by parseTopic(), which refuses a filter with SUBACK 0x80 where aedes would close the
    // connection; aedes keeps its own default (100) as the guard of its routing trie.
    maxClientsIdLength: 256,
    maximumPacketSize: config.mqttMaxPacketSize || config.maxPayload + 64 * 1024,
    queueLimit: config.mqttQueueLimit,
    // MQTT 5 clients are told the window they may use (enforced by packet-rules.ts); 0 advertises none.
    receiveMaximum: config.mqttMaxInflight,
    ...connectHooks(ctx, sessions, delivery, stored.up),
    authorizeForward: delivery.authorizeForward,
    authorizePublish: authorizePublishHook(ctx, sessions, delivery),
    authorizeSubscribe: authorizeSubscribeHook(ctx, sessions, shares),
  });
  cluster?.bind(broker);
  await broker.listen();
  delivery.bind(broker);
  shares.bind(broker);
  const shared = stored.sessions?.(broker.id);
  const stopSweeping = stored.local !== undefined
    ? keepStoredSessions(broker, stored.local, logger, config.mqttSessionExpiryMax)
    : shared && keepSharedSessions(broker, shared, logger, config.mqttSessionExpiryMax);
  // aedes reports a session store failure while queueing here (the publish is not completed): logged, not thrown.
  (broker as unknown as NodeJS.EventEmitter).on('error', (err: Error) => logger.error({ err: err.message }, 'MQTT session store failed'));

  // Read at scrape time from aedes 2.0.0-beta.1 internals its types do not declare: its connected clients (each with
  // its subscriptions by filter) and its persistence's retained messages.
  const internals = broker as unknown as {
    clients: Record<string, Client & { subscriptions: Record<string, unknown> }>;
    persistence: { createRetainedStream(pattern: string): AsyncIterable<unknown> };
  };
  metrics.watchMqtt({
    subscriptions() {
      const counts = { mqtt: 0, 'mqtt-ws': 0 };
      for (const client of Object.values(internals.clients)) counts[inflowOf(client).transport] += Object.keys(client.subscriptions).length;
      return counts;
    },
    async retained() {
      let count = 0;
      // Canonical topics only: the copy kept on a message's legacy topic is the same message.
      for await (const _ of internals.persistence.createRetainedStream('m/#')) count++;
      return count;
    },
    // Counted in memory from a local state; with Redis, read from it at most every few seconds (redis-sessions.ts).
    sessions: () => ({ persistent: stored.local?.sessions.size ?? shared?.counts()?.sessions, online: Object.keys(internals.clients).length }),
    queued: () => stored.local?.queued ?? shared?.counts()?.queued,
  });
  broker.on('client', (client) => {
    trimConnected(client);
    gauges[inflowOf(client).transport].inc();
  });
  broker.on('clientReady', (client) => {
    queueDelivered(client);
    cluster?.resumed(client);
  });
  broker.on('ack', (_packet, client) => acked(client));
  broker.on('clientError', (client: FleetClient, err: Error) => {
    // aedes' drain timeout (a subscriber that stopped reading), or the WebSocket's own backpressure limit
    if (client[kDropped] || (err.message !== 'drain timeout' && !err.message.startsWith('subscriber too slow'))) return;
    client[kDropped] = true;
    metrics.dropped(inflowOf(client).transport);
    logger.warn({ ...sessions.site(client), code: 'FG_ERR_SLOW_CONSUMER' }, 'subscriber dropped');
  });
  broker.on('unsubscribe', (topics: string[], client: FleetClient) => sessions.unsubscribed(client, topics));
  const takingOver = (broker as unknown as { _takingOver: Set<string> })._takingOver;
  broker.on('clientDisconnect', (client: FleetClient) => {
    // closed because its client id connected again, here or on another instance (cluster.ts)
    if (takingOver.has(client.id)) metrics.takeover();
    gauges[inflowOf(client).transport].dec();
    sessions.close(client);
    // gone before its resumed queue was emptied: its session still ends with the connection
    queueDelivered(client);
    forgetUnreleased(client);
  });

  return {
    deliver: delivery.deliver,
    arrive: delivery.arrive,
    /** the session store: shared by the instances, and reachable (readiness) */
    sessionsShared: stored.sessions !== undefined,
    sessionsUp: stored.up,
    /** Serves one MQTT connection over any Duplex (TCP, TLS, WebSocket), with its client certificate if it has one. */
    handle: (stream: Duplex, peer?: PeerCertificate, address?: string): void => {
      // MQTT.js and many devices send small packets: Nagle would add up to 40 ms per message.
      if (stream instanceof Socket) stream.setNoDelay(true);
      const client = broker.handle(new MqttInflow(stream, peer, stream instanceof WsDuplex ? 'mqtt-ws' : 'mqtt', address));
      lightenParser(client);
      shares.attach(client);
      onPacketBeforeAedes(client, routeUnsubscribe);
      enforcePacketRules(client, config.mqttMaxInflight);
      disconnectFromConnack(client);
    },
    ...sessions.listener,
    /** Stops accepting, closes every client, then the persistence (what it has left is written). */
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await stopSweeping?.();
      await stored.close();
    },
  };
}
