import type { Frontends, Instance } from './haproxy.ts';

/** deploy/compose.yaml's topology, from which deploy/haproxy.cfg is written (npm run deploy:config). */
export const kComposeFrontends: Frontends = { http: 8080, mqtt: 1883, https: 8443, mqtts: 8883 };

export const kComposeInstances: readonly Instance[] = [1, 2, 3].map((n) => ({
  name: `fleetgate-${n}`, host: `fleetgate-${n}`, http: 8080, mqtt: 1883, https: 8443, mqtts: 8883,
}));
