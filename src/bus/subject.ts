/**
 * NATS subjects of the bus: `m.<domain id>.c.<channel id>[.<subtopic levels>]` (DESIGN.md §6). A subtopic level may
 * hold "." (a NATS separator) and "%": both are percent-encoded, so that each MQTT level is exactly one NATS token and
 * the mapping reverses. Ids are UUIDs and need nothing.
 */
export function subjectOf(domainId: string, channelId: string, subtopic: string | null): string {
  const base = `m.${domainId}.c.${channelId}`;
  if (subtopic === null) return base;
  const levels = subtopic.includes('.') || subtopic.includes('%') ? subtopic.replace(/%/g, '%25').replace(/\./g, '%2E') : subtopic;
  return `${base}.${levels.replaceAll('/', '.')}`;
}

/** What an instance subscribes to for one channel: the channel itself, and any subtopic under it. */
export function channelSubjects(channelId: string): readonly [string, string] {
  // Channel ids are unique across domains, so the domain token is a wildcard: one pair of subscriptions per channel.
  return [`m.*.c.${channelId}`, `m.*.c.${channelId}.>`];
}

/** The one subject of broker signals (bus.ts `signal`): every instance subscribes to it. */
export const kSignalSubject = 'fleetgate.mqtt.signal';
