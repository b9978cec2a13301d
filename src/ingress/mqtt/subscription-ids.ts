import { matchesFilter } from '../../fanout/topic.ts';

/** What this reads of an aedes 2.0.0-beta.1 client: its subscriptions by filter, each with its identifier if it has one. */
interface SubscribedClient {
  readonly subscriptions: Record<string, { readonly si?: number }>;
}

/**
 * [MQTT-3.3.4-3/5] A message that matches several of a client's subscriptions reaches it once (aedes keeps the first copy),
 * and that copy carries the identifiers of every matching subscription: aedes 2.0.0-beta.1 puts only the identifier of
 * the subscription whose copy came first. Looked at only for a copy that came with an identifier. The packet is the
 * subscription's own copy: its properties object is replaced, never changed (aedes shares them between packets).
 */
export function withAllIdentifiers<P extends { topic: string; properties?: Record<string, unknown> }>(client: object, packet: P): P {
  if (packet.properties?.subscriptionIdentifier === undefined) return packet;
  const topic = packet.topic.split('/');
  const ids: number[] = [];
  for (const [filter, subscription] of Object.entries((client as SubscribedClient).subscriptions)) {
    if (subscription.si !== undefined && matchesFilter(filter.split('/'), topic)) ids.push(subscription.si);
  }
  if (ids.length > 1) {
    const { subscriptionIdentifier: _, ...others } = packet.properties;
    packet.properties = { ...others, subscriptionIdentifier: ids };
  }
  return packet;
}
