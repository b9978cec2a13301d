import type { AedesOptions, Subscription } from 'aedes';
import type mqttPacket from 'mqtt-packet';
import { fail } from '../../errors.ts';
import { canonicalTopic, legacyTopic } from '../../fanout/topic.ts';
import { kPermission, type Channel } from '../../registry/types.ts';
import type { Target } from '../../types.ts';
import type { IngressContext } from '../context.ts';
import { kSession, refusalError, type FleetClient } from './client.ts';
import type { Sessions } from './session.ts';
import type { SharedSubscriptions } from './shared.ts';
import { malformedString, parseTopic } from './topic.ts';

/**
 * aedes' SUBSCRIBE hook: each filter is authorised on its own (refused: SUBACK 0x80, MQTT 5 0x87) and routed by the
 * form that meets the topics aedes routes (see below). A shared subscription is authorised as the filter it wraps.
 */
export function authorizeSubscribeHook({ pipeline, config }: IngressContext, sessions: Sessions, shares: SharedSubscriptions): NonNullable<AedesOptions['authorizeSubscribe']> {
  return (client: FleetClient, sub: Subscription, callback) => {
    const session = client[kSession];
    if (session === undefined) return callback(refusalError(fail('FG_ERR_AUTHN_MISSING', 'not authenticated')), null);
    // [MQTT-1.5.3-2] U+0000 (and invalid UTF-8) in a filter closes the connection; other bad filters get 0x80.
    if (malformedString(sub.topic)) return callback(refusalError(fail('FG_ERR_PARSE_TOPIC', 'filter holds U+0000 or invalid UTF-8')), null);
    const share = shares.classify(sub.topic);
    if (share.kind === 'refused') return callback(null, null);
    const shared = share.kind === 'shared';
    const filter = shared ? share.filter : sub.topic;
    const target = parseTopic(filter, true, config.mqttMaxTopicLevels);
    const admission = target.ok ? pipeline.authorizeFor(session.principal, target.value, kPermission.subscribe) : target;
    if (!admission.ok) sessions.refused(client, 'subscribe', shared ? `$share/${share.name}/${filter}` : filter, admission);
    if (!target.ok || !admission.ok) return callback(null, null);
    const { channel } = admission.value;
    const topic = routedFilter(channel, target.value);
    // aedes keeps a shared subscription under the name it came with (so that UNSUBSCRIBE finds it) and routes nothing
    // by it: the group gets the messages of the routed filter.
    sessions.subscribed(client, session, shared ? sub.topic : topic, target.value, channel.id);
    if (shared) shares.join(client, sub, share.name, topic, target.value, channel.id);
    // In place: aedes stores a persistent session's filters, and looks up retained messages, from the SUBSCRIBE's own
    // list, so both use the form it routes by.
    else sub.topic = topic;
    callback(null, sub);
  };
}

/**
 * The form aedes routes (and stores) a filter by: a legacy filter stays legacy (with the channel's id), so that it
 * receives on legacy topics; any other form becomes canonical, so that ids and routes meet.
 */
const routedFilter = (channel: Channel, target: Target): string =>
  target.domain === null ? legacyTopic(channel.id, target.subtopic) : canonicalTopic(channel.domainId, channel.id, target.subtopic);

/**
 * Renames the plain filters of an UNSUBSCRIBE, as it is parsed and before aedes handles it, to the form the SUBSCRIBE
 * hook gave them, so that aedes finds (and its persistence removes) the subscription. A filter that names no channel
 * the client may subscribe to stays as it is: aedes finds no such subscription (MQTT 5 UNSUBACK 0x11). `$` filters
 * are shared.ts'.
 */
export function routeUnsubscribes({ pipeline, config }: IngressContext) {
  return function route(this: { client: FleetClient }, packet: mqttPacket.Packet): void {
    const session = this.client[kSession];
    if (packet.cmd !== 'unsubscribe' || session === undefined) return;
    packet.unsubscriptions = packet.unsubscriptions.map((filter) => {
      if (filter.charCodeAt(0) === 36 /* $ */ || malformedString(filter)) return filter;
      const target = parseTopic(filter, true, config.mqttMaxTopicLevels);
      const admission = target.ok ? pipeline.authorizeFor(session.principal, target.value, kPermission.subscribe) : target;
      return target.ok && admission.ok ? routedFilter(admission.value.channel, target.value) : filter;
    });
  };
}
