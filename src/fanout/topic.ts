/**
 * MQTT filter matching on subtopic levels (the part after the channel), the one rule set every protocol follows
 * (DESIGN.md §6): no filter matches only messages without a subtopic, "+" matches one level, and "#" matches any
 * number of levels including none [MQTT-4.7.1-2].
 */
export function matchesFilter(filter: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const level = filter[i];
    if (level === '#') return true;
    if (i >= topic.length) return false;
    if (level !== '+' && level !== topic[i]) return false;
  }
  return filter.length === topic.length;
}

/** The MQTT topic a message is delivered on: ids, never routes, so that every subscriber of a channel meets it. */
export function canonicalTopic(domainId: string, channelId: string, subtopic: string | null): string {
  return subtopic === null ? `m/${domainId}/c/${channelId}` : `m/${domainId}/c/${channelId}/${subtopic}`;
}

/** The same message's Mainflux topic, for subscribers that use the legacy form (DESIGN.md §6). */
export function legacyTopic(channelId: string, subtopic: string | null): string {
  return subtopic === null ? `channels/${channelId}/messages` : `channels/${channelId}/messages/${subtopic}`;
}

export function splitSubtopic(subtopic: string | null): string[] {
  return subtopic === null ? [] : subtopic.split('/');
}
