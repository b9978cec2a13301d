import type { Audit } from '../audit.ts';
import type { AuthEngine } from '../auth/engine.ts';
import type { SharedBus } from '../bus/shared.ts';
import type { AuthLimiter } from '../auth/rate-limit.ts';
import type { KeyRing } from '../auth/keys.ts';
import type { GatewayConfig } from '../config.ts';
import type { Interest, Subscriptions } from '../fanout/subscriptions.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Pipeline } from '../pipeline/index.ts';
import type { Provisioning } from '../registry/service.ts';
import type { RegistryView } from '../registry/view.ts';
import type { UserService } from '../users/service.ts';
import type { PeerCertificates } from '../tls/terminator.ts';
import type { Inflight } from './inflight.ts';

/** What every ingress adapter gets from the gateway. */
export interface IngressContext {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  readonly audit: Audit;
  readonly metrics: Metrics;
  readonly pipeline: Pipeline;
  readonly subscriptions: Subscriptions;
  /** channels with a local subscriber, for the bus (WebSocket ones are told by `subscriptions` itself) */
  readonly interest: Interest;
  /** how MQTT shared subscription groups span instances */
  readonly sharedBus: SharedBus;
  readonly provisioning: Provisioning;
  readonly view: RegistryView;
  readonly users: UserService;
  readonly auth: AuthEngine;
  /** failure limits of secrets and passwords (docs/RATE-LIMITS.md) */
  readonly limiter: AuthLimiter;
  readonly keys: KeyRing;
  readonly inflight: Inflight;
  /** client certificates of connections that came through the mutual-TLS terminator; undefined without mutual TLS */
  readonly peers: PeerCertificates | undefined;
  /** the shared services this instance depends on, and whether each is reachable now (readiness) */
  dependencies(): Record<string, 'up' | 'down'>;
  /** true once shutdown has begun: new requests and upgrades get FG_ERR_SHUTTING_DOWN */
  closing(): boolean;
}
