import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { refusalKind, who, type AuditWho } from '../audit.ts';
import { fillAcl } from '../auth/acl.ts';
import { credentialFromCertificate, type PeerCertificate } from '../auth/certificate.ts';
import { credentialFromAuthorization, type Credential } from '../auth/credentials.ts';
import { accountOf } from '../auth/rate-limit.ts';
import { digestSecret } from '../auth/secret.ts';
import { fail, kErrors, type Failure, type Result } from '../errors.ts';
import { canonicalTopic, legacyTopic } from '../fanout/topic.ts';
import { parseTopicLevels } from '../pipeline/parse.ts';
import { kPermission } from '../registry/types.ts';
import type { Message, Principal, Target } from '../types.ts';
import { Dependents, ownersOf, recheckOnChange } from '../dependents.ts';
import type { IngressContext } from './context.ts';
import { ExpiryTimer } from './expiry.ts';
import { encodeOnceDelivery, tooLargeFor } from './mqtt-deliver.ts';
import { MqttInflow } from './mqtt-inflow.ts';
import { WsDuplex } from './ws-duplex.ts';

/** What fleetgate keeps on each aedes client. */
interface MqttSession {
  principal: Principal;
  /** the CONNECT username, for logs and the audit */
  readonly username: string | undefined;
  /** admitted subscriptions by canonical filter, re-checked when the registry changes */
  readonly subscriptions: Map<string, { readonly target: Target; readonly channelId: string }>;
  expiry: ExpiryTimer | undefined;
}

const kSession = Symbol('fleetgate.session');
const kRefusal = Symbol('fleetgate.refusal');
/** the client's delivery counter, bound to its transport once (see authorizeForward) */
const kDelivered = Symbol('fleetgate.delivered');
/** set once the client is counted as dropped: aedes reports the error once per write that was waiting */
const kDropped = Symbol('fleetgate.dropped');
type FleetClient = Client & { [kSession]?: MqttSession; [kRefusal]?: string; [kDelivered]?: { inc(): void }; [kDropped]?: true };

/** The connection as fleetgate wrapped it: its transport and remote address. */
const inflowOf = (client: Client): MqttInflow => client.conn as unknown as MqttInflow;

/** An aedes CONNECT refusal with the MQTT 3.1.1 return code of the registry. */
function connectError(failure: Failure): Error & { returnCode: number } {
  return Object.assign(new Error(`${failure.code}: ${failure.message}`), { returnCode: kErrors[failure.code].mqtt ?? 5 });
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
  callback(new Error(`${failure.code}: ${failure.message}`), false);
}

/** [MQTT-1.5.4-1/2] U+0000, or invalid UTF-8 (decoded as U+FFFD), in a string of a packet makes it malformed. */
const malformedString = (text: string): boolean => text.includes('\u0000') || text.includes('\uFFFD');

/**
 * Refuses a PUBLISH (DESIGN.md §7). MQTT 3.1.1 has no way to say why: the connection is closed. MQTT 5 keeps it and
 * answers a QoS 1 or 2 PUBLISH with the reason code of the refusal (0x87 not authorised, 0x90 topic name invalid, 0x99
 * payload format invalid) and the FG_ERR code as reason string. aedes 2.0.0-beta.1 answers every refusal with 0x87, so
 * fleetgate acknowledges itself and sets the flag aedes reads to drop a PUBLISH it has answered. A will (no `cmd`: it
 * never came as a PUBLISH) is simply not published.
 */
function refusePublish(client: Client, packet: PublishPacket, failure: Failure, callback: (error?: Error | null) => void): void {
  const error = new Error(`${failure.code}: ${failure.message}`);
  if (client.version !== 5 || packet.cmd !== 'publish') return callback(error);
  (packet as { _notAuthorized?: boolean })._notAuthorized = true;
  const conn = client.conn as Duplex;
  if (packet.qos > 0 && conn.writable) {
    const reason = (client as { _requestProblemInformation?: boolean })._requestProblemInformation === false ? undefined : { reasonString: error.message };
    conn.write(mqttPacket.generate({
      cmd: packet.qos === 1 ? 'puback' : 'pubrec', messageId: packet.messageId!, reasonCode: kErrors[failure.code].mqtt5, ...(reason && { properties: reason }),
    }, { protocolVersion: 5 }));
  }
  callback(null);
}

/** The will properties that are PUBLISH properties too (MQTT 5 §3.1.3.2, §3.3.2.3). */
const kPublishWillProperties = ['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'userProperties'] as const;

/**
 * A will's properties as its PUBLISH may carry them: the Will Delay Interval (0x18) belongs to the CONNECT only, and
 * Paho's client refuses a PUBLISH that holds it. aedes has read the delay by the time it asks to publish the will.
 * A new object: aedes shares properties objects between packets.
 */
function publishPropertiesOfWill(properties: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const name of kPublishWillProperties) if (properties[name] !== undefined) kept[name] = properties[name];
  return kept;
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
 * Topic names and filters: the §3 grammar, at most `maxLevels` levels, and no U+0000 or invalid UTF-8 (decoded as
 * U+FFFD) [MQTT-1.5.3-1/2].
 */
function parseTopic(topic: string, allowWildcards: boolean, maxLevels: number): Result<Target> {
  if (topic.includes('\uFFFD')) return fail('FG_ERR_PARSE_TOPIC', 'topic is not valid UTF-8');
  const levels = topic.split('/');
  if (levels.length > maxLevels) return fail('FG_ERR_PARSE_TOPIC', `more than ${maxLevels} topic levels`);
  return parseTopicLevels(levels, allowWildcards);
}

/**
 * MQTT 3.1.1 and 5 on aedes, with the same auth engine, pipeline and fan-out as HTTP and WebSocket. CONNECT
 * authenticates once (refusals get their CONNACK code); each PUBLISH is authorised, validated and normalised before
 * aedes routes it, its topic rewritten to the channel's canonical `m/<domain id>/c/<channel id>[/<subtopic>]` so that
 * subscribers using ids or routes meet (plus a legacy-topic copy for legacy subscribers); each SUBSCRIBE filter is
 * authorised on its own (refused: SUBACK 0x80, MQTT 5 0x87). Messages accepted on other protocols reach MQTT
 * subscribers through fan-out (fanout/fanout.ts).
 */
export async function startMqtt(ctx: IngressContext) {
  const { pipeline, auth, logger, metrics, config } = ctx;
  const byOwner = new Dependents<FleetClient>();
  /** online clients subscribed to a channel (any form), and those with a legacy-form subscription */
  const byChannel = new Dependents<FleetClient>();
  const byLegacyChannel = new Dependents<FleetClient>();
  const gauges = { mqtt: metrics.connections('mqtt'), 'mqtt-ws': metrics.connections('mqtt-ws') };
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

  /**
   * A PUBLISH (or will) whose payload is over FLEETGATE_MAX_PAYLOAD. 0x95 (packet too large) is no PUBACK reason code:
   * MQTT 5 is told with a DISCONNECT, at any QoS; MQTT 3.1.1 is closed. Never published.
   */
  const refuseTooLarge = (client: FleetClient, packet: PublishPacket, callback: (error?: Error | null) => void): void => {
    const failure = pipeline.rejected('mqtt', fail('FG_ERR_PARSE_TOO_LARGE', `payload exceeds ${config.maxPayload} bytes`));
    refused(client, 'publish', packet.topic, failure);
    if (client.version !== 5 || packet.cmd !== 'publish') return callback(new Error(`${failure.code}: ${failure.message}`));
    (packet as { _notAuthorized?: boolean })._notAuthorized = true;
    end(client, failure);
    callback(null);
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

  const maxPacket = config.mqttMaxPacketSize || config.maxPayload + 64 * 1024;
  const deliverEncodedOnce = encodeOnceDelivery();
  const broker = await Aedes.createBroker({
    connectTimeout: config.mqttConnectTimeout,
    keepaliveLimit: config.mqttKeepaliveLimit,
    drainTimeout: config.mqttDrainTimeout,
    // No mqemitter queue: with one (concurrency > 0) a long queue of deliveries that complete synchronously recurses
    // once per message and overflows the stack under overload (mqemitter 7.1, aedes#193; reproduced by the overload
    // test). In-flight work stays bounded anyway: aedes reads a client's next buffer only when its last batch is done.
    concurrency: 0,
    // Topic levels are limited by parseTopic(), which refuses a filter with SUBACK 0x80 where aedes would close the
    // connection; aedes keeps its own default (100) as the guard of its routing trie.
    maxClientsIdLength: 256,
    maximumPacketSize: maxPacket,
    queueLimit: config.mqttQueueLimit,

    preConnect(client: FleetClient, packet, callback) {
      client[kDelivered] = metrics.deliveries(inflowOf(client).transport);
      deliverEncodedOnce(client, client[kDelivered]);
      // MQTT 3.1.1 cannot tell a client that its keepalive is too long: like mosquitto, fleetgate refuses it with
      // CONNACK 2 (aedes would answer 6, a code 3.1.1 does not have). MQTT 5 clients are told the limit instead
      // (Server Keep Alive). The keepalive is lowered only to get past aedes' own check; authenticate() refuses.
      const limit = config.mqttKeepaliveLimit;
      const keepalive = packet.keepalive ?? 0;
      if (limit > 0 && (packet.protocolVersion ?? 4) < 5 && (keepalive === 0 || keepalive > limit)) {
        client[kRefusal] = `keepalive ${keepalive} s: at most ${limit} s`;
        packet.keepalive = limit;
      }
      // aedes accepts such a will topic, then drops the will when it fails to publish it: refuse the CONNECT instead.
      const willTopic = packet.will?.topic;
      if (willTopic !== undefined && malformedString(willTopic)) {
        const failure = fail('FG_ERR_REQUEST_INVALID', 'will topic holds U+0000 or invalid UTF-8');
        logger.info({ ...site(client), mqtt_client_id: packet.clientId, code: failure.code, reason: failure.message }, 'connect refused');
        return refuseConnect(client, packet.protocolVersion ?? 4, failure, callback);
      }
      // Failure limits (docs/RATE-LIMITS.md) of a client secret, before anything is checked.
      const { peer, remote } = inflowOf(client);
      const account = peer === undefined ? accountOf(credentialOf(packet.username, packet.password)) : undefined;
      const refused = account === undefined ? undefined : ctx.limiter.check('mqtt', account ?? undefined, remote);
      if (refused !== undefined) return refuseConnect(client, packet.protocolVersion ?? 4, refused, callback);
      callback(null, true);
    },

    // QoS 1 and 2 deliveries stay on aedes' path, which asks this once per packet it forwards to a client (QoS 0 is
    // counted by encode-once delivery). Returning nothing drops the packet for this client.
    authorizeForward(client: FleetClient, packet) {
      if (tooLargeFor(client, packet)) return undefined;
      client[kDelivered]?.inc();
      return packet;
    },

    authenticate(client: FleetClient, username, password, done) {
      if (ctx.closing()) return done(connectError(fail('FG_ERR_SHUTTING_DOWN')), false);
      const refusal = client[kRefusal];
      if (refusal !== undefined) {
        logger.info({ ...site(client), ...(username && { username }), reason: refusal }, 'connect refused');
        return done(Object.assign(new Error(refusal), { returnCode: 2 }), false);
      }
      const settle = (authenticated: Result<Principal>): void => {
        const principal = authenticated.ok ? forConnection(authenticated.value, client.id, username, peer !== undefined) : authenticated;
        const { transport, remote } = inflowOf(client);
        metrics.authenticated(transport, principal.ok ? 'ok' : principal.code);
        const named = { protocol: transport, remote, mqtt_client_id: client.id, ...(username && { username }) };
        const kind = credential?.kind ?? 'none';
        ctx.audit.authn({ ...named, credential: kind, ...(authenticated.ok && who(authenticated.value)), result: authenticated.ok ? 'ok' : authenticated });
        if (!principal.ok) {
          if (authenticated.ok) ctx.audit.authz({ ...named, ...who(authenticated.value), action: 'connect', target: client.id, failure: principal });
          return done(connectError(principal), false);
        }
        const session: MqttSession = { principal: principal.value, username, subscriptions: new Map(), expiry: undefined };
        client[kSession] = session;
        for (const owner of ownersOf(principal.value)) byOwner.add(owner, client);
        session.expiry = new ExpiryTimer(principal.value.expiresAt, () => end(client, fail('FG_ERR_AUTHN_EXPIRED')));
        done(null, true);
      };
      const { peer, remote } = inflowOf(client);
      const credential = peer === undefined ? credentialOf(username, password) : credentialFromCertificate(peer, password?.toString('utf8') ?? '', config.tlsIdentity);
      const principal = ctx.limiter.guard('mqtt', credential, () => remote, () => auth.authenticate(credential));
      if (principal instanceof Promise) void principal.then(settle);
      else settle(principal);
    },

    authorizePublish(client: FleetClient | null, packet, callback) {
      // A will (no `cmd`: it never came as a PUBLISH) is published as the packet it is asked about.
      if (packet.cmd !== 'publish' && packet.properties !== undefined) packet.properties = publishPropertiesOfWill(packet.properties);
      // The broker's own publishes (the sink below) were checked on their way in.
      if (client === null) return callback(null);
      const session = client[kSession];
      if (session === undefined) return callback(new Error('not authenticated'));
      const refuse = (failure: Failure): void => {
        refused(client, 'publish', packet.topic, failure);
        refusePublish(client, packet, pipeline.rejected('mqtt', failure), callback);
      };
      // The broker's packet limit leaves room for topic and properties; the payload limit is every protocol's.
      if (packet.payload.length > config.maxPayload) return refuseTooLarge(client, packet, callback);
      if (packet.topic.startsWith('$')) return refuse(fail('FG_ERR_AUTHZ_FORBIDDEN', '$ topics are not publishable'));
      const target = parseTopic(packet.topic, false, config.mqttMaxTopicLevels);
      if (!target.ok) return refuse(target);
      const admission = pipeline.authorizeFor(session.principal, target.value, kPermission.publish);
      if (!admission.ok) return refuse(admission);
      if (packet.retain && packet.payload.length === 0) {
        // [MQTT-3.3.1-10] an empty retained PUBLISH clears the topic's retained message: a control, not a message.
        const { channel } = admission.value;
        packet.topic = canonicalTopic(channel.domainId, channel.id, target.value.subtopic);
        publishLegacy(channel.id, target.value.subtopic, Buffer.alloc(0), packet.qos, true);
        return callback(null);
      }
      const accepted = pipeline.publish(admission.value, 'mqtt', target.value, undefined, packet.payload as Buffer, false);
      if (!accepted.ok) {
        refused(client, 'publish', packet.topic, accepted);
        return refusePublish(client, packet, accepted, callback);
      }
      // aedes routes the packet on: the normalised payload, on the canonical topic.
      const message = accepted.value;
      packet.topic = canonicalTopic(message.domainId, message.channelId, message.subtopic);
      packet.payload = toBuffer(message.payload);
      publishLegacy(message.channelId, message.subtopic, packet.payload, packet.qos, packet.retain);
      callback(null);
    },

    authorizeSubscribe(client: FleetClient, sub: Subscription, callback) {
      const session = client[kSession];
      if (session === undefined) return callback(new Error('not authenticated'), null);
      // [MQTT-1.5.3-2] U+0000 (and invalid UTF-8) in a filter closes the connection; other bad filters get 0x80.
      if (malformedString(sub.topic)) return callback(new Error('filter holds U+0000 or invalid UTF-8'), null);
      const target = parseTopic(sub.topic, true, config.mqttMaxTopicLevels);
      const admission = target.ok ? pipeline.authorizeFor(session.principal, target.value, kPermission.subscribe) : target;
      if (!admission.ok) refused(client, 'subscribe', sub.topic, admission);
      if (!target.ok || !admission.ok) return callback(null, null);
      const { channel } = admission.value;
      // A legacy filter stays legacy (with the channel's id), so that it receives on legacy topics; any other form
      // becomes canonical, so that ids and routes meet.
      const topic = target.value.domain === null ? legacyTopic(channel.id, target.value.subtopic) : canonicalTopic(channel.domainId, channel.id, target.value.subtopic);
      session.subscriptions.set(topic, { target: target.value, channelId: channel.id });
      if (!byChannel.has(channel.id)) ctx.interest.want(channel.id);
      byChannel.add(channel.id, client);
      if (target.value.domain === null) byLegacyChannel.add(channel.id, client);
      callback(null, { ...sub, topic });
    },
  });

  // Read at scrape time from aedes 2.0.0-beta.1 internals its types do not declare: its connected clients (each with
  // its subscriptions by filter) and its persistence's retained messages.
  const internals = broker as unknown as {
    clients: Record<string, Client & { subscriptions: Record<string, unknown> }>;
    persistence: { createRetainedStream(pattern: string): AsyncIterable<unknown> };
  };
  metrics.watchMqtt({
    subscriptions() {
      const counts = { mqtt: 0, 'mqtt-ws': 0 };
      for (const client of Object.values(internals.clients)) counts[inflowOf(client).transport] += Object.keys(client.subscriptions).length;
      return counts;
    },
    async retained() {
      let count = 0;
      // Canonical topics only: the copy kept on a message's legacy topic is the same message.
      for await (const _ of internals.persistence.createRetainedStream('m/#')) count++;
      return count;
    },
  });
  broker.on('client', (client) => gauges[inflowOf(client).transport].inc());
  broker.on('clientError', (client: FleetClient, err: Error) => {
    // aedes' drain timeout (a subscriber that stopped reading), or the WebSocket's own backpressure limit
    if (client[kDropped] || (err.message !== 'drain timeout' && !err.message.startsWith('subscriber too slow'))) return;
    client[kDropped] = true;
    metrics.dropped(inflowOf(client).transport);
    logger.warn({ ...site(client), code: 'FG_ERR_SLOW_CONSUMER' }, 'subscriber dropped');
  });
  broker.on('clientDisconnect', (client: FleetClient) => {
    gauges[inflowOf(client).transport].dec();
    const session = client[kSession];
    if (session === undefined) return;
    session.expiry?.cancel();
    for (const owner of ownersOf(session.principal)) byOwner.delete(owner, client);
    for (const { channelId } of session.subscriptions.values()) {
      const watched = byChannel.has(channelId);
      byChannel.delete(channelId, client);
      if (watched && !byChannel.has(channelId)) ctx.interest.unwant(channelId);
      byLegacyChannel.delete(channelId, client);
    }
  });

  const brokerPublish = (topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): void => {
    broker.publish({ cmd: 'publish', qos, dup: false, retain, topic, payload } as AedesPublishPacket, (err?: Error) => {
      if (err) logger.warn({ err: err.message }, 'MQTT fan-out failed');
    });
  };

  /**
   * The copy for legacy (`channels/<id>/messages`) subscribers. A QoS 0 message that is not retained reaches online
   * subscribers only (aedes queues nothing at QoS 0 for offline sessions), so it is skipped when none is online.
   */
  function publishLegacy(channelId: string, subtopic: string | null, payload: Buffer, qos: 0 | 1 | 2, retain: boolean): void {
    if (qos === 0 && !retain && !byLegacyChannel.has(channelId)) return;
    brokerPublish(legacyTopic(channelId, subtopic), payload, qos, retain);
  }

  // Messages accepted over HTTP and WebSocket, or by another instance, reach MQTT subscribers at QoS 0: skipped
  // outright for a channel no online MQTT client subscribes to (measured: the unconditional copy cost HTTP publish ~18%
  // of its throughput). MQTT's own messages on this instance are routed by aedes already.
  const deliver = (message: Message, routed: boolean): void => {
    if (routed || !byChannel.has(message.channelId)) return;
    const payload = toBuffer(message.payload);
    brokerPublish(canonicalTopic(message.domainId, message.channelId, message.subtopic), payload, 0, false);
    publishLegacy(message.channelId, message.subtopic, payload, 0, false);
  };

  return {
    deliver,
    /** Serves one MQTT connection over any Duplex (TCP, TLS, WebSocket), with its client certificate if it has one. */
    handle: (stream: Duplex, peer?: PeerCertificate, address?: string): void => {
      // MQTT.js and many devices send small packets: Nagle would add up to 40 ms per message.
      if (stream instanceof Socket) stream.setNoDelay(true);
      broker.handle(new MqttInflow(stream, peer, stream instanceof WsDuplex ? 'mqtt-ws' : 'mqtt', address));
    },
    ...recheckOnChange(byOwner, byChannel, recheck),
    /** Stops accepting, then closes every client. */
    close: () => new Promise<void>((resolve) => broker.close(() => resolve())),
  };
}

function toBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}
