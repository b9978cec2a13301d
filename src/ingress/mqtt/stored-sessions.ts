import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import type { RedisSessions } from '../../mqtt-persistence/redis-sessions.ts';
import type { MqttState } from '../../mqtt-persistence/state.ts';
import { kSession, type FleetClient } from './client.ts';

/** how often expired sessions are looked for: every 10 s, or sooner when sessions live less */
const kSweepMs = 10_000;
/** MQTT 5's "never expires" [MQTT-3.1.2-11 §3.1.2.11.2] */
const kNever = 0xFFFFFFFF;

/** How long a client's session outlives its connection: seconds, 0 for ever; undefined: it ends with it. */
function intervalOf(client: Client): number | undefined {
  if (client.clean) return undefined;
  return client.sessionExpiryInterval >= kNever ? 0 : client.sessionExpiryInterval;
}

const sweepMs = (maxExpiry: number): number => (maxExpiry === 0 ? kSweepMs : Math.min(kSweepMs, maxExpiry * 1000));

/**
 * Persistent sessions as they outlive their connections and restarts: each one expires its interval after its client
 * left (MQTT 5 Session Expiry Interval, capped by aedes' `sessionExpiryIntervalLimit`; MQTT 3.1.1 sessions get the
 * cap, FLEETGATE_MQTT_SESSION_EXPIRY_MAX). The expiry time is stored, so it holds across restarts; aedes' own timers
 * do not survive one. A restored session's subscriptions that are no longer authorised are forgotten.
 */
export function keepStoredSessions(broker: Aedes, state: MqttState, logger: Logger, maxExpiry: number): () => void {
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
  const timer = setInterval(sweep, sweepMs(maxExpiry)).unref();

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

/** an instance that has not swept for this many sweep periods is taken for dead: its online sessions start expiring */
const kAliveSweeps = 3;

/**
 * Persistent sessions kept in Redis (shared by the instances), expired as keepStoredSessions does with the expiry
 * times in Redis (mqtt-persistence/redis-sessions.ts): any instance ends an expired session, the one that claims it.
 * aedes' own MQTT 5 timer still runs where the client left; ending a session twice is harmless.
 */
export function keepSharedSessions(broker: Aedes, sessions: RedisSessions, logger: Logger, maxExpiry: number): () => Promise<void> {
  const persistence = (broker as unknown as { persistence: { cleanSubscriptions(client: { id: string }): Promise<void> } }).persistence;
  const online = (broker as unknown as { clients: Record<string, unknown> }).clients;
  const takingOver = (broker as unknown as { _takingOver: Set<string> })._takingOver;
  const failed = (clientId: string) => (err: unknown) => logger.error({ err, mqtt_client_id: clientId }, 'MQTT session expiry not stored');
  const period = sweepMs(maxExpiry);
  let sweeping = false;
  const sweep = async (): Promise<void> => {
    if (sweeping) return;
    sweeping = true;
    try {
      for (const clientId of await sessions.claimExpired(period * kAliveSweeps)) {
        // its subscriptions, and with the last of them its queue (aedes-persistence-redis)
        if (online[clientId] === undefined) await persistence.cleanSubscriptions({ id: clientId });
      }
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'MQTT session expiry sweep failed: tried again at the next one');
    } finally {
      sweeping = false;
    }
  };
  void sweep();
  const timer = setInterval(() => void sweep(), period).unref();
  broker.on('client', (client: Client) => {
    sessions.online(client.id, intervalOf(client)).catch(failed(client.id));
  });
  broker.on('clientDisconnect', (client: Client) => {
    const interval = intervalOf(client);
    // taken over: the new connection (here or on another instance) owns the session now
    if (interval !== undefined && !takingOver.has(client.id)) sessions.offline(client.id, interval).catch(failed(client.id));
  });
  return async () => {
    clearInterval(timer);
    await sessions.close().catch(() => {});
  };
}
