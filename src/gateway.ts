import { availableParallelism, hostname } from 'node:os';
import type uWS from 'uWebSockets.js';
import { createAudit, type Audit } from './audit.ts';
import { autoProvisioner } from './auth/auto-provision.ts';
import { AuthEngine } from './auth/engine.ts';
import { keyCipher } from './auth/key-encryption.ts';
import { KeyRing } from './auth/keys.ts';
import { OidcKeys } from './auth/oidc.ts';
import { AuthPool } from './auth/pool.ts';
import { AuthLimiter } from './auth/rate-limit.ts';
import type { GatewayConfig } from './config.ts';
import { fail, GatewayError } from './errors.ts';
import { localBus, type Bus } from './bus/bus.ts';
import { natsBus } from './bus/nats.ts';
import { localSharedBus, natsSharedBus } from './bus/shared.ts';
import { Fanout } from './fanout/fanout.ts';
import { Subscriptions } from './fanout/subscriptions.ts';
import { mountApi } from './ingress/api.ts';
import { mountSignIn } from './ingress/oauth.ts';
import type { IngressContext } from './ingress/context.ts';
import { trustedProxies } from './ingress/proxy-protocol.ts';
import { guardRoutes } from './ingress/edge.ts';
import { mountHttpPublish } from './ingress/http.ts';
import { startMqtt } from './ingress/mqtt/index.ts';
import { mountMqttOverWs } from './ingress/mqtt-ws.ts';
import { Inflight } from './ingress/inflight.ts';
import { writeFailure } from './ingress/respond.ts';
import { mountWs } from './ingress/ws.ts';
import { startListeners, type Listeners } from './ingress/listeners.ts';
import { readTlsMaterial } from './tls/material.ts';
import { PeerCertificates } from './tls/terminator.ts';
import { createLogger, type Logger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { createPipeline } from './pipeline/index.ts';
import { Provisioning } from './registry/service.ts';
import { openStore } from './registry/open-store.ts';
import type { Store } from './registry/store.ts';
import { RegistryView } from './registry/view.ts';
import { createMailer } from './users/mailer.ts';
import { defaultResetUrl } from './users/reset-link.ts';
import { FederatedSignIn, signInProviders } from './users/federation.ts';
import { UserService } from './users/service.ts';
import { within } from './within.ts';

export interface GatewayDeps {
  readonly logger?: Logger;
  readonly audit?: Audit;
}

export interface Gateway {
  /** Loads the registry and keys, starts the auth workers and every listener; resolves once they accept. */
  start(): Promise<void>;
  /** Graceful stop, in reverse order of start: listeners, connections (close 1001), in-flight requests, workers, store. */
  close(): Promise<void>;
  /** Bound port of the HTTP/WS listener (useful with port 0), or null when it is off. */
  readonly httpPort: number | null;
  /** Bound port of the MQTT listener, or null when it is off. */
  readonly mqttPort: number | null;
  /** Reads the TLS files again for new connections (SIGHUP); throws, keeping the old ones, if they are bad. */
  reloadTls(): Promise<void>;
  /** Bound ports of the TLS listeners, or null when they are off (no server certificate). */
  readonly httpsPort: number | null;
  readonly mqttsPort: number | null;
  readonly provisioning: Provisioning;
  /** available once started */
  readonly users: UserService;
}

/** Wires store -> registry view -> keys -> auth pool and engine -> pipeline -> ingress adapters. */
export function createGateway(config: GatewayConfig, deps: GatewayDeps = {}): Gateway {
  const logger = deps.logger ?? createLogger(config.logLevel);
  const audit = deps.audit ?? createAudit(config.auditLog, logger);
  const store: Store = openStore(config.store, config.storeBusyTimeout);
  const view = new RegistryView(store);
  const provisioning = new Provisioning(store, view, (op, ids) => audit.change({ op, ids }));
  const keys = new KeyRing(store, {
    algorithm: config.jwtAlgorithm, secret: config.jwtSecret, issuer: config.jwtIssuer, clockTolerance: config.jwtClockTolerance,
    cipher: keyCipher(config),
  });
  const metrics = createMetrics();
  const busName = `fleetgate ${hostname()} ${process.pid}`;
  // The bus hands other instances' messages to fan-out, which is made just below: the arrow defers the reference.
  const bus: Bus = config.bus === 'local' ? localBus : natsBus({
    url: config.bus, name: busName, logger, sent: metrics.busSent, dropped: metrics.busDropped,
  }, (message) => fanout.arrive(message));
  const sharedBus = config.bus === 'local' ? localSharedBus : natsSharedBus({ url: config.bus, name: busName, logger, carrying: () => bus.connected });
  const subscriptions = new Subscriptions(bus);
  const fanout = new Fanout(subscriptions, bus, metrics);
  const inflight = new Inflight();
  const limiter = new AuthLimiter({
    enabled: config.authLimit, window: config.authLimitWindow, accountFailures: config.authLimitAccountFailures, addressFailures: config.authLimitAddressFailures,
    backoff: config.authLimitBackoff, maxBackoff: config.authLimitMaxBackoff, entries: config.authLimitEntries,
  }, (action) => {
    metrics.rateLimited(action.action, action.protocol, action.scope);
    audit.limit({
      protocol: action.protocol, remote: action.address, key: action.scope, action: action.action === 'block' ? 'blocked' : 'refused',
      ...(action.account !== undefined && { account: action.account }), code: action.code, retry_after: action.retryAfter,
    });
  });
  let closing = false;
  let listeners: Listeners | undefined;
  let pool: AuthPool | undefined;
  let users: UserService | undefined;
  const ws: ReturnType<typeof mountWs>[] = [];
  let mqtt: Awaited<ReturnType<typeof startMqtt>> | undefined;

  return {
    get httpPort() {
      return listeners?.http ?? null;
    },
    get httpsPort() {
      return listeners?.https ?? null;
    },
    get mqttPort() {
      return listeners?.mqtt ?? null;
    },
    get mqttsPort() {
      return listeners?.mqtts ?? null;
    },
    provisioning,
    reloadTls: async () => listeners?.reloadTls(),
    get users() {
      if (users === undefined) throw new GatewayError('FG_ERR_INTERNAL', 'gateway not started');
      return users;
    },

    async start() {
      // First: bad TLS files stop the start before anything else is running.
      const tls = config.tlsCert === '' ? undefined : readTlsMaterial(config);
      await view.load();
      await keys.load();
      pool = new AuthPool({
        threads: config.authWorkers || availableParallelism(), queueLimit: config.authQueueLimit, material: keys.material(),
        hashThreads: config.authHashWorkers, hashQueueLimit: config.authHashQueueLimit,
      });
      keys.onChange((material) => pool!.setKeys(material));
      // Listeners open once the workers can verify: no first-request stall while they load.
      await pool.ready;
      const oidc = config.oidcIssuer === '' ? undefined : new OidcKeys({
        issuer: config.oidcIssuer, jwksUrl: config.oidcJwksUrl, audience: config.oidcAudience, cooldown: config.oidcJwksCooldown,
      }, keys, logger);
      const auth = new AuthEngine(view, pool, {
        cacheSize: config.authCacheSize, cacheTtl: config.authCacheTtl, negativeTtl: config.authNegativeTtl, clockTolerance: config.jwtClockTolerance,
        subjectClaim: config.oidcSubjectClaim, aclClaim: config.oidcAclClaim, rolesClaim: config.oidcRolesClaim, roleAcl: config.oidcRoleAcl,
        onVerify: metrics.verification,
        ...(oidc && { refreshExternalKeys: () => oidc.refresh() }),
        ...(config.oidcAutoProvision && { provisionExternal: autoProvisioner(provisioning, view, config.oidcAutoProvisionDomain, logger) }),
      });
      await oidc?.refresh();
      if (oidc && config.oidcAudience === '') logger.warn('FLEETGATE_OIDC_AUDIENCE is empty: any token of FLEETGATE_OIDC_ISSUER is accepted, whoever it was issued to (an id_token for a web app too)');
      users = new UserService({
        store, view, pool, auth, limiter, mailer: createMailer(config.mailUrl, config.mailFrom),
        settings: { issuer: config.jwtIssuer, accessTtl: config.jwtAccessTtl, refreshTtl: config.jwtRefreshTtl, recoveryTtl: config.jwtRecoveryTtl, resetUrl: () => config.passwordResetUrl || defaultResetUrl(config.host, { http: listeners?.http ?? null, https: listeners?.https ?? null }), selfRegistration: config.selfRegistration },
      });
      const signIn = new FederatedSignIn(signInProviders(config), { users, pool, auth, store, issuer: config.jwtIssuer, logger });
      const pipeline = createPipeline({ view, auth, fanout, metrics });
      // HTTPS/WSS terminated by Node TLS (always with a client CA; by choice otherwise, to reload live) names each
      // connection's certificate to the uWS app through these.
      const peers = tls !== undefined && (tls.mutual || config.tlsTerminator === 'node') ? new PeerCertificates() : undefined;
      const ctx: IngressContext = { config, logger, audit, metrics, pipeline, subscriptions, interest: bus, sharedBus, provisioning, view, users, auth, limiter, keys, inflight, peers, closing: () => closing,
        dependencies: (): Record<string, 'up' | 'down'> => ({
          ...(config.bus !== 'local' && { bus: bus.connected ? 'up' : 'down' }),
          ...(store.watch !== undefined && { store: view.current ? 'up' : 'down' }),
          ...(mqtt?.sessionsShared === true && { mqtt_sessions: mqtt.sessionsUp() ? 'up' : 'down' }),
        }),
      };
      mqtt = await startMqtt(ctx, bus);
      fanout.attachMqtt(mqtt);
      view.listen(mqtt);
      const broker = mqtt;
      // One set of routes per uWS app: the plain one, and the TLS one when uWS terminates TLS itself.
      const routes = (uwsApp: uWS.TemplatedApp): void => {
        // Every route below passes the HTTP edge checks: framing, CORS, HEAD/OPTIONS/405 (ingress/edge.ts).
        const app = guardRoutes(uwsApp, config.corsOrigins, trustedProxies(config.trustedProxies));
        mountMqttOverWs(app, ctx, broker.handle);
        mountApi(app, ctx, () => {
          const at = (port: number | null | undefined) => (port == null ? null : { host: config.host, port });
          return { http: at(listeners?.http), https: at(listeners?.https), mqtt: at(listeners?.mqtt), mqtts: at(listeners?.mqtts) };
        });
        mountSignIn(app, ctx, signIn);
        mountHttpPublish(app, ctx);
        const sockets = mountWs(app, ctx);
        app.any('/*', (res) => writeFailure(res, fail('FG_ERR_ROUTE_NOT_FOUND')));
        view.listen(sockets);
        ws.push(sockets);
      };
      // Keys rotated or retired (by the CLI, or another instance): reload, hand them to the workers, then forget
      // every verified token, so that a retired key's tokens stop working now.
      view.listen({
        keysChanged: () => void keys.load().then(() => auth.clear(), (err: unknown) => logger.error({ err }, 'key reload failed')),
      });

      if (config.adminEmail !== '') {
        const outcome = await users.ensureAdmin(config.adminEmail, config.adminPassword);
        logger.info({ email: config.adminEmail, outcome }, 'admin user');
      } else {
        logger.warn('FLEETGATE_ADMIN_EMAIL/FLEETGATE_ADMIN_PASSWORD not set: no admin, so the provisioning API refuses every request; use `fleetgate provision`');
      }
      await within(config.busConnectWait, bus.start(), () => logger.warn({ bus: config.bus }, 'bus not reachable yet: serving this instance\'s clients; cross-instance delivery starts when it connects'));
      await view.startPolling(config.storePollInterval, (err) => logger.error({ err }, 'registry sync failed'));
      listeners = await startListeners({ config, logger, routes, mqtt: broker.handle, tls, peers });
    },

    async close() {
      if (closing) return;
      closing = true;
      view.stopPolling();
      listeners?.stop();
      for (const sockets of ws) sockets.closeAll();
      // aedes waits for every client's close: bounded, so one stuck socket cannot hold the shutdown.
      if (mqtt !== undefined) await within(config.shutdownTimeout, mqtt.close(), () => logger.warn('MQTT broker did not close in time'));
      await inflight.idle(config.shutdownTimeout);
      // The last responses may still sit in uWS's cork buffer until the current callback unwinds: let it.
      await new Promise((resolve) => setImmediate(resolve));
      listeners?.close();
      await pool?.close();
      await sharedBus.close();
      await bus.close();
      metrics.close();
      audit.close();
      await store.close();
      logger.info('stopped');
    },
  };
}
