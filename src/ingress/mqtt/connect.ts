import type { Duplex } from 'node:stream';
import type { AedesOptions, Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { who } from '../../audit.ts';
import { fillAcl } from '../../auth/acl.ts';
import { credentialFromCertificate } from '../../auth/certificate.ts';
import { credentialFromAuthorization, type Credential } from '../../auth/credentials.ts';
import { accountOf } from '../../auth/rate-limit.ts';
import { digestSecret } from '../../auth/secret.ts';
import { fail, kErrors, type Failure, type Result } from '../../errors.ts';
import type { Principal } from '../../types.ts';
import type { IngressContext } from '../context.ts';
import { inflowOf, kRefusal, refusalError, type FleetClient } from './client.ts';
import type { Delivery } from './deliver.ts';
import { keepResumedQueue } from './resume.ts';
import type { Sessions } from './session.ts';
import { malformedString } from './topic.ts';

/** An aedes CONNECT refusal with the MQTT 3.1.1 return code of the registry. */
function connectError(failure: Failure): Error & { returnCode: number } {
  return Object.assign(refusalError(failure), { returnCode: kErrors[failure.code].mqtt ?? 5 });
}

/**
 * Refuses a CONNECT from preConnect, before any check of its credential, with the registry's CONNACK code, which for
 * MQTT 5 aedes' authenticate path cannot give (it maps the 3.1.1 code: 5 would become 0x87, not 0x97). The refusal
 * makes aedes close the connection without a CONNACK of its own; MQTT 3.1.1 gets none either when the registry has no
 * 3.1.1 code for it (a malformed packet is closed [MQTT-1.5.3-1]).
 */
function refuseConnect(client: Client, version: number, failure: Failure, callback: (error: Error | null, ok: boolean) => void): void {
  const returnCode = kErrors[failure.code].mqtt;
  const connack = version === 5
    ? { cmd: 'connack', sessionPresent: false, reasonCode: kErrors[failure.code].mqtt5, properties: { reasonString: `${failure.code}: ${failure.message}` } } as const
    : returnCode === null ? undefined : { cmd: 'connack', sessionPresent: false, returnCode } as const;
  if (connack !== undefined) (client.conn as Duplex).write(mqttPacket.generate(connack, { protocolVersion: version === 5 ? 5 : 4 }));
  callback(refusalError(failure), false);
}

/**
 * DESIGN.md §4.1: username = client id and password = its secret (as Magistrala), or password = a JWT (fleetgate's or
 * the identity provider's), or a secret alone with no username.
 */
function credentialOf(username: string | undefined, password: Buffer | undefined): Credential | undefined {
  if (password === undefined || password.length === 0) return undefined;
  const text = password.toString('utf8');
  const asBearer = credentialFromAuthorization(text);
  if (asBearer?.kind === 'bearer') return asBearer;
  return username ? { kind: 'basic', clientId: username, digest: digestSecret(text) } : { kind: 'secret', digest: digestSecret(text) };
}

/**
 * aedes' CONNECT hooks. preConnect refuses what needs no credential check (keepalive, will topic, failure limits);
 * authenticate runs the pipeline's authenticate stage once (refusals get their CONNACK code) and opens the session.
 */
export function connectHooks(ctx: IngressContext, sessions: Sessions, delivery: Delivery, sessionStoreUp: () => boolean) {
  const { pipeline, logger, config } = ctx;

  /**
   * A principal on this connection: the username rule of client certificates; for an identity provider's token the
   * Mosquitto JWT plugin's username / client id rules, and ACL placeholders read with this connection's own names (%c
   * client id, %u username).
   */
  const forConnection = (principal: Principal, clientId: string, username: string | undefined, certified: boolean): Result<Principal> => {
    // With a client certificate, a username (the Magistrala commands pass the client id) must be that client's id.
    if (certified && username && principal.kind === 'client' && username !== principal.id) {
      return fail('FG_ERR_AUTHZ_FORBIDDEN', 'username must be the id of the certificate\'s client');
    }
    const subject = principal.kind === 'external' ? principal.id : principal.kind === 'client' ? principal.subject : undefined;
    if (subject === undefined) return { ok: true, value: principal };
    if (config.oidcMatchUsernameToSubject && username !== subject) return fail('FG_ERR_AUTHZ_FORBIDDEN', 'username must be the token subject');
    if (config.oidcMatchClientIdToSubject && clientId !== subject) return fail('FG_ERR_AUTHZ_FORBIDDEN', 'client id must be the token subject');
    if (principal.kind !== 'external') return { ok: true, value: principal };
    return { ok: true, value: { ...principal, acl: fillAcl(principal.rules, { clientId, username: username ?? subject }) } };
  };

  const preConnect: NonNullable<AedesOptions['preConnect']> = (client: FleetClient, packet, callback) => {
    delivery.attach(client);
    // MQTT 3.1.1 cannot tell a client that its keepalive is too long: like mosquitto, fleetgate refuses it with
    // CONNACK 2 (aedes would answer 6, a code 3.1.1 does not have). MQTT 5 clients are told the limit instead
    // (Server Keep Alive). The keepalive is lowered only to get past aedes' own check; authenticate() refuses.
    const limit = config.mqttKeepaliveLimit;
    const keepalive = packet.keepalive ?? 0;
    if (limit > 0 && (packet.protocolVersion ?? 4) < 5 && (keepalive === 0 || keepalive > limit)) {
      client[kRefusal] = fail('FG_ERR_REQUEST_INVALID', `keepalive ${keepalive} s: at most ${limit} s`);
      packet.keepalive = limit;
    }
    // aedes accepts such a will topic, then drops the will when it fails to publish it: refuse the CONNECT instead.
    const willTopic = packet.will?.topic;
    if (willTopic !== undefined && malformedString(willTopic)) {
      const failure = fail('FG_ERR_REQUEST_INVALID', 'will topic holds U+0000 or invalid UTF-8');
      logger.info({ ...sessions.site(client), mqtt_client_id: packet.clientId, code: failure.code, reason: failure.message }, 'connect refused');
      return refuseConnect(client, packet.protocolVersion ?? 4, failure, callback);
    }
    // Failure limits (docs/RATE-LIMITS.md) of a client secret, before anything is checked.
    const { peer, remote } = inflowOf(client);
    const account = peer === undefined ? accountOf(credentialOf(packet.username, packet.password)) : undefined;
    const refused = account === undefined ? undefined : ctx.limiter.check('mqtt', account ?? undefined, remote);
    if (refused !== undefined) return refuseConnect(client, packet.protocolVersion ?? 4, refused, callback);
    callback(null, true);
  };

  const authenticate: NonNullable<AedesOptions['authenticate']> = (client: FleetClient, username, password, done) => {
    if (ctx.closing()) return done(connectError(fail('FG_ERR_SHUTTING_DOWN')), false);
    // A session that could be neither read nor saved: refused (the balancer sends the device elsewhere or it retries).
    if (!sessionStoreUp()) return done(connectError(fail('FG_ERR_MQTT_STATE_UNAVAILABLE')), false);
    const refusal = client[kRefusal];
    if (refusal !== undefined) {
      logger.info({ ...sessions.site(client), ...(username && { username }), code: refusal.code, reason: refusal.message }, 'connect refused');
      // CONNACK 2 (identifier rejected), whatever the registry says: mosquitto's answer to a keepalive over its limit.
      return done(Object.assign(refusalError(refusal), { returnCode: 2 as const }), false);
    }
    const { peer, remote, transport } = inflowOf(client);
    const credential = peer === undefined ? credentialOf(username, password) : credentialFromCertificate(peer, password?.toString('utf8') ?? '', config.tlsIdentity);
    const settle = (authenticated: Result<Principal>): void => {
      const principal = authenticated.ok ? forConnection(authenticated.value, client.id, username, peer !== undefined) : authenticated;
      const named = { protocol: transport, remote, mqtt_client_id: client.id, ...(username && { username }) };
      ctx.audit.authn({ ...named, credential: credential?.kind ?? 'none', ...(authenticated.ok && who(authenticated.value)), result: authenticated.ok ? 'ok' : authenticated });
      if (!principal.ok) {
        if (authenticated.ok) ctx.audit.authz({ ...named, ...who(authenticated.value), action: 'connect', target: client.id, failure: principal });
        return done(connectError(principal), false);
      }
      sessions.open(client, principal.value, username);
      keepResumedQueue(client);
      done(null, true);
    };
    const principal = ctx.limiter.guard('mqtt', credential, () => remote, () => pipeline.authenticate(credential, transport));
    if (principal instanceof Promise) void principal.then(settle);
    else settle(principal);
  };

  return { preConnect, authenticate };
}
