import uWS, { type us_listen_socket } from 'uWebSockets.js';
import type { GatewayConfig } from './config.ts';
import { fail } from './errors.ts';
import { Subscriptions } from './fanout/subscriptions.ts';
import { mountApi } from './ingress/api.ts';
import type { IngressContext } from './ingress/context.ts';
import { mountHttpPublish } from './ingress/http.ts';
import { Inflight } from './ingress/inflight.ts';
import { writeFailure } from './ingress/respond.ts';
import { mountWs } from './ingress/ws.ts';
import { createLogger, type Logger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { createPipeline } from './pipeline/index.ts';
import { Provisioning } from './registry/service.ts';
import { openSqliteStore } from './registry/sqlite-store.ts';
import type { Store } from './registry/store.ts';
import { RegistryView } from './registry/view.ts';

export interface GatewayDeps {
  readonly logger?: Logger;
}

export interface Gateway {
  /** Starts every listener; resolves once they accept connections. */
  start(): Promise<void>;
  /** Graceful stop, in reverse order of start: listeners, connections (close 1001), in-flight requests, store. */
  close(): Promise<void>;
  /** Bound port of the HTTP/WS listener (useful with port 0), or null when it is off. */
  readonly httpPort: number | null;
  readonly provisioning: Provisioning;
}

/** Wires store -> registry view -> pipeline -> ingress adapters. Nothing listens until start(). */
export function createGateway(config: GatewayConfig, deps: GatewayDeps = {}): Gateway {
  const logger = deps.logger ?? createLogger(config.logLevel);
  const store: Store = openSqliteStore(config.store);
  const view = new RegistryView(store);
  const provisioning = new Provisioning(store, view);
  const metrics = createMetrics();
  const subscriptions = new Subscriptions();
  const pipeline = createPipeline({ view, subscriptions, metrics });
  const inflight = new Inflight();
  let closing = false;
  let httpPort: number | null = null;
  let listenSocket: us_listen_socket | undefined;

  const ctx: IngressContext = { config, logger, metrics, pipeline, subscriptions, provisioning, inflight, closing: () => closing };
  const app = uWS.App();
  mountApi(app, ctx, () => ({ http: httpPort === null ? null : { host: config.host, port: httpPort } }));
  mountHttpPublish(app, ctx);
  const ws = mountWs(app, ctx);
  app.any('/*', (res) => writeFailure(res, fail('FG_ERR_ROUTE_NOT_FOUND')));
  view.listen(ws);

  return {
    get httpPort() {
      return httpPort;
    },
    provisioning,

    async start() {
      await view.load();
      if (config.adminEmail !== '') {
        const outcome = await provisioning.ensureAdmin(config.adminEmail, config.adminPassword);
        logger.info({ email: config.adminEmail, outcome }, 'admin user');
      } else {
        logger.warn('FLEETGATE_ADMIN_EMAIL/FLEETGATE_ADMIN_PASSWORD not set: the provisioning API refuses every request; use `fleetgate provision`');
      }
      view.startPolling(config.storePollInterval, (err) => logger.error({ err }, 'registry sync failed'));
      if (config.httpPort !== null) {
        const wanted = config.httpPort;
        listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
          app.listen(config.host, wanted, (token) => (token ? resolve(token) : reject(new Error(`cannot listen on ${config.host}:${wanted}`))));
        });
        httpPort = uWS.us_socket_local_port(listenSocket);
        logger.info({ listener: 'http', host: config.host, port: httpPort, routes: 'HTTP publish, WebSocket, REST API, /health, /metrics' }, 'listening');
      }
    },

    async close() {
      if (closing) return;
      closing = true;
      view.stopPolling();
      if (listenSocket !== undefined) uWS.us_listen_socket_close(listenSocket);
      ws.closeAll();
      await inflight.idle(config.shutdownTimeout);
      // The last responses may still sit in uWS's cork buffer until the current callback unwinds: let it.
      await new Promise((resolve) => setImmediate(resolve));
      // Ends keep-alive HTTP and any socket still open; present in this build though missing from its typings.
      (app as typeof app & { close(): void }).close();
      await store.close();
      logger.info('stopped');
    },
  };
}
