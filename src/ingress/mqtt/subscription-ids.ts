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
  // on every MQTT 5 delivery that carries an identifier: nothing allocated until a second matching one turns up
  const subscriptions = (client as SubscribedClient).subscriptions;
  let topic: string[] | undefined;
  let first: number | undefined;
  let ids: number[] | undefined;
  for (const filter in subscriptions) {
    const id = subscriptions[filter]!.si;
    if (id === undefined || !matchesFilter(filter.split('/'), (topic ??= packet.topic.split('/')))) continue;
    if (first === undefined) first = id;
    else (ids ??= [first]).push(id);
  }
  if (ids !== undefined) {
    const { subscriptionIdentifier: _, ...others } = packet.properties;
    packet.properties = { ...others, subscriptionIdentifier: ids };
  }
  return packet;
}
