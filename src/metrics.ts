import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from './errors.ts';
import type { Protocol } from './types.ts';

/** Protocol labels of connection, authentication and delivery metrics: message protocols, the REST API, MQTT over WebSocket. */
export type Transport = Protocol | 'api' | 'mqtt-ws';
const kTransports = ['http', 'api', 'ws', 'mqtt', 'mqtt-ws'] as const satisfies readonly Transport[];

/** One label child per transport, bound once. */
function byTransport<T>(child: (transport: Transport) => T): Record<Transport, T> {
  return Object.fromEntries(kTransports.map((t) => [t, child(t)])) as Record<Transport, T>;
}

/**
 * A count as cheap as `n++`, for once-per-message events: prom-client's label children hash their labels on every
 * `inc`, so these are tallied in a plain field and added to their counter when it is scraped (`addTo`).
 */
class Tally {
  private n = 0;

  inc(by = 1): void {
    this.n += by;
  }

  static addTo(tallies: Record<string, Tally>, add: (key: string, n: number) => void): void {
    for (const [key, tally] of Object.entries(tallies)) {
      if (tally.n === 0) continue;
      add(key, tally.n);
      tally.n = 0;
    }
  }
}

/** What the MQTT broker reports at scrape time (counting there costs the message path nothing). */
export interface MqttGauges {
  /** subscriptions of the connected clients, by transport */
  subscriptions(): Record<'mqtt' | 'mqtt-ws', number>;
  retained(): Promise<number>;
  /** persistent sessions (stored, online or not) and connected clients */
  sessions(): { persistent: number | undefined; online: number };
  /** QoS 1/2 messages held for persistent sessions (queued or in flight) */
  queued(): number | undefined;
}

/**
 * Prometheus metrics of one gateway (its own registry, so that several gateways can live in one process, as in the
 * tests). Per-message events are counters only, tallied in plain fields (Tally) so the hot path does no label hashing.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fleetgate_', eventLoopMonitoringPrecision: 1 });
  // prom-client's nodejs_eventloop_lag_* include their own sampling interval (an idle process shows p99 = 10.6 ms at
  // the default precision): this one subtracts it, so it reads how late the loop really ran, since the last scrape.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  new Gauge({
    name: 'fleetgate_event_loop_delay_p99_seconds', help: 'p99 of how late the event loop ran a 1 ms timer, since the previous scrape', registers: [registry],
    collect() {
      this.set(Math.max(0, loop.percentile(99) - 1e6) / 1e9);
      loop.reset();
    },
  });
  const acceptedBy = { http: new Tally(), ws: new Tally(), mqtt: new Tally() } satisfies Record<Protocol, Tally>;
  const authOk = byTransport(() => new Tally());
  const deliveredBy = byTransport(() => new Tally());
  new Counter({
    name: 'fleetgate_messages_accepted_total', help: 'Messages accepted and fanned out', labelNames: ['protocol'], registers: [registry],
    collect() {
      Tally.addTo(acceptedBy, (protocol, n) => this.inc({ protocol }, n));
    },
  });
  const rejected = new Counter({
    name: 'fleetgate_messages_rejected_total', help: 'Publishes refused, by error code', labelNames: ['protocol', 'code'], registers: [registry],
  });
  new Counter({
    name: 'fleetgate_deliveries_total', help: 'Messages handed to subscribers (messages out), by subscriber protocol', labelNames: ['protocol'], registers: [registry],
    collect() {
      Tally.addTo(deliveredBy, (protocol, n) => this.inc({ protocol }, n));
    },
  });
  const drops = new Counter({
    name: 'fleetgate_subscriber_drops_total', help: 'Subscribers disconnected for being too slow', labelNames: ['protocol'], registers: [registry],
  });
  const authentications = new Counter({
    name: 'fleetgate_authentications_total', help: 'Credential checks, by protocol and result (ok or error code)', labelNames: ['protocol', 'result'], registers: [registry],
    collect() {
      Tally.addTo(authOk, (protocol, n) => this.inc({ protocol, result: 'ok' }, n));
    },
  });
  let mqtt: MqttGauges | undefined;
  const subscriptions = new Gauge({
    name: 'fleetgate_subscriptions', help: 'Live subscriptions: subscribed WebSockets, and MQTT filters of connected clients', labelNames: ['protocol'], registers: [registry],
    collect() {
      if (mqtt === undefined) return;
      const counts = mqtt.subscriptions();
      this.labels('mqtt').set(counts.mqtt);
      this.labels('mqtt-ws').set(counts['mqtt-ws']);
    },
  });
  new Gauge({
    name: 'fleetgate_retained_messages', help: 'MQTT retained messages held by the broker', registers: [registry],
    async collect() {
      if (mqtt !== undefined) this.set(await mqtt.retained());
    },
  });
  const connections = new Gauge({
    name: 'fleetgate_connections', help: 'Open subscriber/publisher connections', labelNames: ['protocol'], registers: [registry],
  });
  const verifications = new Counter({
    name: 'fleetgate_auth_verifications_total', help: 'Tokens sent to the auth workers (cache misses that were not already being verified)', registers: [registry],
  });
  const apiRequests = new Counter({
    name: 'fleetgate_api_requests_total', help: 'REST API requests, by route pattern and status', labelNames: ['route', 'status'], registers: [registry],
  });
  const publishSeconds = new Histogram({
    name: 'fleetgate_http_publish_duration_seconds', help: 'HTTP publish: request start to response, accepted or not',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1], registers: [registry],
  });
  const subscribedBy = byTransport((t) => subscriptions.labels(t));
  const rateLimited = new Counter({
    name: 'fleetgate_auth_rate_limited_total', help: 'Authentication failure limits: blocks begun and attempts refused, by protocol and scope (address, account)',
    labelNames: ['action', 'protocol', 'scope'], registers: [registry],
  });
  const busBy = { out: new Tally(), in: new Tally() };
  new Counter({
    name: 'fleetgate_bus_messages_total', help: 'Messages sent to (out) and received from (in) the other instances over the bus', labelNames: ['direction'], registers: [registry],
    collect() {
      Tally.addTo(busBy, (direction, n) => this.inc({ direction }, n));
    },
  });
  const busDroppedBy = { all: new Tally() };
  new Counter({
    name: 'fleetgate_bus_dropped_total', help: 'Messages that could not be sent to the other instances (bus down): local subscribers still got them', registers: [registry],
    collect() {
      Tally.addTo(busDroppedBy, (_, n) => this.inc(n));
    },
  });

  new Gauge({
    name: 'fleetgate_mqtt_sessions', help: 'MQTT sessions: persistent (stored, whether their client is online or not) and online (connected clients)', labelNames: ['kind'], registers: [registry],
    collect() {
      if (mqtt === undefined) return;
      const { persistent, online } = mqtt.sessions();
      if (persistent !== undefined) this.labels('persistent').set(persistent);
      this.labels('online').set(online);
    },
  });
  new Gauge({
    name: 'fleetgate_mqtt_queued_messages', help: 'MQTT QoS 1/2 messages held for persistent sessions, queued or in flight', registers: [registry],
    collect() {
      const queued = mqtt?.queued();
      if (queued !== undefined) this.set(queued);
    },
  });
  const queueDroppedBy = { all: new Tally() };
  new Counter({
    name: 'fleetgate_mqtt_queue_dropped_total', help: 'MQTT QoS 1/2 messages dropped from a full queue (FLEETGATE_MQTT_MAX_QUEUED), oldest first: a persistent session\'s, or those waiting for an online client\'s in-flight window', registers: [registry],
    collect() {
      Tally.addTo(queueDroppedBy, (_, n) => this.inc(n));
    },
  });
  const takeovers = new Counter({
    name: 'fleetgate_mqtt_takeovers_total', help: 'MQTT connections closed because their client id connected again (on this instance or another: session taken over)', registers: [registry],
  });

  return {
    registry,
    accepted: (protocol: Protocol) => acceptedBy[protocol].inc(),
    rejected: (protocol: Protocol, code: ErrorCode) => rejected.labels(protocol, code).inc(),
    /** deliveries to local subscriptions (WebSocket subscribers) */
    delivered: (count: number) => count > 0 && deliveredBy.ws.inc(count),
    /** the bound delivery counter of a transport, for an adapter to keep per connection */
    deliveries: (transport: Transport) => deliveredBy[transport],
    dropped: (transport: Transport) => drops.labels(transport).inc(),
    authenticated: (transport: Transport, result: ErrorCode | 'ok') => (result === 'ok' ? authOk[transport].inc() : authentications.labels(transport, result).inc()),
    connections: (transport: Transport) => connections.labels(transport),
    subscriptions: (transport: Transport) => subscribedBy[transport],
    /** the broker's scrape-time gauges (subscriptions, retained messages) */
    watchMqtt: (gauges: MqttGauges) => {
      mqtt = gauges;
    },
    verification: () => verifications.inc(),
    apiRequest: (route: string, status: number) => apiRequests.labels(route, String(status)).inc(),
    publishSeconds,
    rateLimited: (action: string, protocol: Protocol, scope: string) => rateLimited.labels(action, protocol, scope).inc(),
    busSent: () => busBy.out.inc(),
    busReceived: () => busBy.in.inc(),
    busDropped: () => busDroppedBy.all.inc(),
    mqttQueueDropped: () => queueDroppedBy.all.inc(),
    takeover: () => takeovers.inc(),
    close: () => loop.disable(),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
