import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from './errors.ts';
import type { Protocol } from './types.ts';

/**
 * Prometheus metrics of one gateway (its own registry, so that several gateways can live in one process, as in the
 * tests). Per-message events are counters only; label children are bound once so the hot path does no label hashing.
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
  const accepted = new Counter({
    name: 'fleetgate_messages_accepted_total', help: 'Messages accepted and fanned out', labelNames: ['protocol'], registers: [registry],
  });
  const rejected = new Counter({
    name: 'fleetgate_messages_rejected_total', help: 'Publishes refused, by error code', labelNames: ['protocol', 'code'], registers: [registry],
  });
  const deliveries = new Counter({
    name: 'fleetgate_deliveries_total', help: 'Messages handed to subscribers', registers: [registry],
  });
  const drops = new Counter({
    name: 'fleetgate_subscriber_drops_total', help: 'Subscribers disconnected for being too slow', labelNames: ['protocol'], registers: [registry],
  });
  const authentications = new Counter({
    name: 'fleetgate_authentications_total', help: 'Credential checks, by result (ok or error code)', labelNames: ['result'], registers: [registry],
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
  const busMessages = new Counter({
    name: 'fleetgate_bus_messages_total', help: 'Messages sent to (out) and received from (in) the other instances over the bus', labelNames: ['direction'], registers: [registry],
  });
  const busDropped = new Counter({
    name: 'fleetgate_bus_dropped_total', help: 'Messages that could not be sent to the other instances (bus down): local subscribers still got them', registers: [registry],
  });
  const busOut = busMessages.labels('out');
  const busIn = busMessages.labels('in');
  const acceptedBy = { http: accepted.labels('http'), ws: accepted.labels('ws'), mqtt: accepted.labels('mqtt') } satisfies Record<Protocol, unknown>;
  const authOk = authentications.labels('ok');

  return {
    registry,
    accepted: (protocol: Protocol) => acceptedBy[protocol].inc(),
    rejected: (protocol: Protocol, code: ErrorCode) => rejected.labels(protocol, code).inc(),
    delivered: (count: number) => count > 0 && deliveries.inc(count),
    dropped: (protocol: Protocol) => drops.labels(protocol).inc(),
    authenticated: (result: ErrorCode | 'ok') => (result === 'ok' ? authOk.inc() : authentications.labels(result).inc()),
    connections: (protocol: Protocol) => connections.labels(protocol),
    verification: () => verifications.inc(),
    apiRequest: (route: string, status: number) => apiRequests.labels(route, String(status)).inc(),
    publishSeconds,
    busSent: () => busOut.inc(),
    busReceived: () => busIn.inc(),
    busDropped: () => busDropped.inc(),
    close: () => loop.disable(),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
