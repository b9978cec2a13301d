import { refusalKind, who, type AuditWho } from '../../audit.ts';
import { Dependents, ownersOf, recheckOnChange } from '../../dependents.ts';
import { fail, kErrors, type Failure } from '../../errors.ts';
import { kPermission } from '../../registry/types.ts';
import type { Principal, Target } from '../../types.ts';
import type { IngressContext } from '../context.ts';
import { ExpiryTimer } from '../expiry.ts';
import { inflowOf, kSession, type FleetClient, type MqttSession } from './client.ts';

/**
 * The sessions of online clients: each one's principal and admitted subscriptions, indexed by owner and by channel so
 * that a registry change re-checks only the clients it concerns, and so that fan-out skips channels no MQTT client
 * subscribes to. A session ends with its connection, or when its principal expires or loses its rights.
 */
export function createSessions(ctx: IngressContext) {
  const { pipeline, auth, logger } = ctx;
  const byOwner = new Dependents<FleetClient>();
  /** online clients subscribed to a channel (any form), and those with a legacy-form subscription */
  const byChannel = new Dependents<FleetClient>();
  const byLegacyChannel = new Dependents<FleetClient>();

  /** Who and where, for the audit and the log: the principal once known, the MQTT names, the address. */
  const site = (client: FleetClient) => {
    const { transport, remote } = inflowOf(client);
    const session = client[kSession];
    const principal: AuditWho = session === undefined ? {} : { ...who(session.principal), ...(session.username && { username: session.username }) };
    return { protocol: transport, remote, ...principal, mqtt_client_id: client.id };
  };

  /** A refused PUBLISH or SUBSCRIBE: refused rights go to the audit; other refusals to the log (debug when MQTT 5 keeps the connection). */
  const refused = (client: FleetClient, action: 'publish' | 'subscribe', target: string, failure: Failure): void => {
    if (refusalKind(failure.code) === 'authz') return ctx.audit.authz({ ...site(client), action, target, failure });
    const fields = { ...site(client), target, code: failure.code, reason: failure.message };
    if (action === 'publish' && client.version === 5) logger.debug(fields, 'publish refused');
    else logger.info(fields, `${action} refused`);
  };

  const end = (client: FleetClient, failure: Failure): void => {
    logger.info({ ...site(client), code: failure.code, reason: failure.message }, 'disconnecting');
    // MQTT 5 is told why (3.1.1 is just closed). 0x86 is for CONNACK only: a DISCONNECT says 0x87 [MQTT-3.14.2-1].
    const reasonCode = kErrors[failure.code].mqtt5 === 0x86 ? 0x87 : kErrors[failure.code].mqtt5;
    client.disconnect({ reasonCode, properties: { reasonString: `${failure.code}: ${failure.message}` } });
  };

  /** Re-checks a live client after a registry change: its principal, and each subscription it holds. */
  const recheck = (client: FleetClient): void => {
    const session = client[kSession];
    if (session === undefined) return;
    const invalid = auth.whyInvalid(session.principal);
    if (invalid !== undefined) return end(client, invalid);
    for (const { target } of session.subscriptions.values()) {
      const admission = pipeline.reauthorize(session.principal, target, kPermission.subscribe);
      if (!admission.ok) return end(client, admission);
    }
  };

  /** An authenticated CONNECT: the client's session, ended when its principal expires. */
  const open = (client: FleetClient, principal: Principal, username: string | undefined): void => {
    const session: MqttSession = { principal, username, subscriptions: new Map(), expiry: undefined };
    client[kSession] = session;
    for (const owner of ownersOf(principal)) byOwner.add(owner, client);
    session.expiry = new ExpiryTimer(principal.expiresAt, () => end(client, fail('FG_ERR_AUTHN_EXPIRED')));
  };

  /** An admitted subscription, under the filter aedes will route by. */
  const subscribed = (client: FleetClient, session: MqttSession, topic: string, target: Target, channelId: string): void => {
    session.subscriptions.set(topic, { target, channelId });
    if (!byChannel.has(channelId)) ctx.interest.want(channelId);
    byChannel.add(channelId, client);
    if (target.domain === null) byLegacyChannel.add(channelId, client);
  };

  /** The client no longer watches the channel: the bus loses interest in it when no other client does. */
  const unwatch = (client: FleetClient, channelId: string): void => {
    const watched = byChannel.has(channelId);
    byChannel.delete(channelId, client);
    if (watched && !byChannel.has(channelId)) ctx.interest.unwant(channelId);
    byLegacyChannel.delete(channelId, client);
  };

  /** Filters aedes has unsubscribed (by the names it keeps them under): the client's channels it no longer subscribes to are unwatched. */
  const unsubscribed = (client: FleetClient, topics: readonly string[]): void => {
    const session = client[kSession];
    if (session === undefined) return;
    for (const topic of topics) {
      const gone = session.subscriptions.get(topic);
      if (gone === undefined) continue;
      session.subscriptions.delete(topic);
      let left = false;
      let legacyLeft = false;
      for (const { channelId, target } of session.subscriptions.values()) {
        if (channelId !== gone.channelId) continue;
        left = true;
        legacyLeft ||= target.domain === null;
      }
      if (!left) unwatch(client, gone.channelId);
      else if (!legacyLeft) byLegacyChannel.delete(gone.channelId, client);
    }
  };

  /** A disconnected client: out of every index. */
  const close = (client: FleetClient): void => {
    const session = client[kSession];
    if (session === undefined) return;
    session.expiry?.cancel();
    for (const owner of ownersOf(session.principal)) byOwner.delete(owner, client);
    for (const { channelId } of session.subscriptions.values()) unwatch(client, channelId);
  };

  return {
    site,
    refused,
    end,
    open,
    subscribed,
    unsubscribed,
    close,
    /** true when an online client subscribes to the channel (any form) */
    watched: (channelId: string): boolean => byChannel.has(channelId),
    /** true when an online client subscribes to the channel in its legacy form */
    watchedLegacy: (channelId: string): boolean => byLegacyChannel.has(channelId),
    /** what the registry view calls on a change: the clients it concerns are re-checked */
    listener: recheckOnChange(byOwner, byChannel, recheck),
  };
}

export type Sessions = ReturnType<typeof createSessions>;
