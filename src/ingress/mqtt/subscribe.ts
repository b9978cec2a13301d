import type { AedesOptions, Subscription } from 'aedes';
import { fail } from '../../errors.ts';
import { canonicalTopic, legacyTopic } from '../../fanout/topic.ts';
import { kPermission } from '../../registry/types.ts';
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
    const filter = share.kind === 'shared' ? share.filter : sub.topic;
    const target = parseTopic(filter, true, config.mqttMaxTopicLevels);
    const admission = target.ok ? pipeline.authorizeFor(session.principal, target.value, kPermission.subscribe) : target;
    if (!admission.ok) sessions.refused(client, 'subscribe', share.kind === 'shared' ? `$share/${share.name}/${filter}` : filter, admission);
    if (!target.ok || !admission.ok) return callback(null, null);
    const { channel } = admission.value;
    // A legacy filter stays legacy (with the channel's id), so that it receives on legacy topics; any other form
    // becomes canonical, so that ids and routes meet.
    const topic = target.value.domain === null ? legacyTopic(channel.id, target.value.subtopic) : canonicalTopic(channel.domainId, channel.id, target.value.subtopic);
    const shared = share.kind === 'shared';
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
