import { fail, type Result } from '../../errors.ts';
import { parseTopicLevels } from '../../pipeline/parse.ts';
import type { Target } from '../../types.ts';

/** [MQTT-1.5.4-1/2] U+0000, or invalid UTF-8 (decoded as U+FFFD), in a string of a packet makes it malformed. */
export const malformedString = (text: string): boolean => text.includes('\u0000') || text.includes('\uFFFD');

/**
 * Topic names and filters: the §3 grammar and at most `maxLevels` levels. Callers have refused a `malformedString`
 * already (it ends the connection, where this answers a refusal).
 */
export function parseTopic(topic: string, allowWildcards: boolean, maxLevels: number): Result<Target> {
  const levels = topic.split('/');
  if (levels.length > maxLevels) return fail('FG_ERR_PARSE_TOPIC', `more than ${maxLevels} topic levels`);
  return parseTopicLevels(levels, allowWildcards);
}
