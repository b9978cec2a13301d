import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import type { MqttState } from '../../mqtt-persistence/state.ts';
import { kSession, type FleetClient } from './client.ts';

/** how often expired sessions are looked for: every 10 s, or sooner when sessions live less */
const kSweepMs = 10_000;
/** MQTT 5's "never expires" [MQTT-3.1.2-11 §3.1.2.11.2] */
const kNever = 0xFFFFFFFF;

/**
 * Persistent sessions as they outlive their connections and restarts: each one expires its interval after its client
 * left (MQTT 5 Session Expiry Interval, capped by aedes' `sessionExpiryIntervalLimit`; MQTT 3.1.1 sessions get the
 * cap, FLEETGATE_MQTT_SESSION_EXPIRY_MAX). The expiry time is stored, so it holds across restarts; aedes' own timers
 * do not survive one. A restored session's subscriptions that are no longer authorised are forgotten.
 */
export function keepStoredSessions(broker: Aedes, state: MqttState, logger: Logger, maxExpiry: number): () => void {
  const intervalOf = (client: Client): number | undefined => {
    if (client.clean) return undefined;
    return client.sessionExpiryInterval >= kNever ? 0 : client.sessionExpiryInterval;
  };
  // Sessions that were online when the process last stopped (killed: no disconnect was seen) left then, as far as
  // their expiry is concerned: now.
  for (const [clientId, { expiresAt }] of state.sessions) if (expiresAt === 0) state.sessionOffline(clientId);

  const online = (broker as unknown as { clients: Record<string, unknown> }).clients;
  const sweep = (): void => {
    for (const clientId of state.expired()) {
      if (online[clientId] !== undefined) continue;
      state.forget(clientId).catch((err: unknown) => logger.error({ err, mqtt_client_id: clientId }, 'MQTT session expiry failed'));
    }
  };
  sweep();
  const timer = setInterval(sweep, maxExpiry === 0 ? kSweepMs : Math.min(kSweepMs, maxExpiry * 1000)).unref();

  broker.on('client', (client: FleetClient) => {
    state.sessionOnline(client.id, intervalOf(client));
    // Restored subscriptions were authorised again (subscribe.ts); those refused stay forgotten, so that nothing
    // more is queued for them [issue 15: a client whose connection to a channel was removed receives nothing from it].
    const admitted = client[kSession]?.subscriptions;
    const stored = state.subscriptions.get(client.id);
    if (admitted === undefined || stored === undefined) return;
    const refused = [...stored.keys()].filter((topic) => !admitted.has(topic));
    if (refused.length > 0) void state.removeSubscriptions(client, refused);
  });
  broker.on('clientDisconnect', (client: Client) => {
    const interval = intervalOf(client);
    if (interval !== undefined) state.sessionOffline(client.id, interval);
  });
  return () => clearInterval(timer);
}
