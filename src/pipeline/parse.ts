import { fail, ok, type Result } from '../errors.ts';
import type { Target } from '../types.ts';

/**
 * Stage 1, parse: pure functions from wire strings to a Target. DESIGN.md §3 path forms, after an optional
 * transport prefix ("/http" or "/ws"):
 *   m/<domain>/c/<channel>[/<subtopic>...]          current Magistrala form
 *   channels/<channel>/messages[/<subtopic>...]      legacy Mainflux form (channel id only)
 */
export function parsePath(path: string, prefix: '/http' | '/ws'): Result<Target> {
  const rest = path.startsWith(prefix + '/') ? path.slice(prefix.length + 1) : path.slice(1);
  let levels = rest.split('/');
  if (path.includes('%')) {
    const decoded = decodeLevels(levels);
    if (decoded === undefined) return fail('FG_ERR_PARSE_TOPIC', 'path holds a malformed percent-encoding');
    levels = decoded;
  }
  // A WebSocket path names a subscription as well as a publish target, so it may hold "+" and "#".
  return parseTopicLevels(levels, prefix === '/ws');
}

/** Shared by every transport (an MQTT topic split on "/" gives the same levels). */
export function parseTopicLevels(levels: readonly string[], allowWildcards: boolean): Result<Target> {
  let domain: string | null;
  let channel: string | undefined;
  let first: number;
  if (levels[0] === 'm' && levels[2] === 'c') {
    domain = levels[1]!;
    channel = levels[3];
    first = 4;
    if (domain.length === 0 || !isPlainLevel(domain)) return fail('FG_ERR_PARSE_TOPIC', 'domain is empty or malformed');
  } else if (levels[0] === 'channels' && levels[2] === 'messages') {
    domain = null;
    channel = levels[1];
    first = 3;
  } else {
    return fail('FG_ERR_PARSE_TOPIC', 'expected m/<domain>/c/<channel>[/<subtopic>] or channels/<channel>/messages[/<subtopic>]');
  }
  if (channel === undefined || channel.length === 0 || !isPlainLevel(channel)) return fail('FG_ERR_PARSE_TOPIC', 'channel is empty or malformed');
  let wildcard = false;
  for (let i = first; i < levels.length; i++) {
    const level = levels[i]!;
    if (level === '#' || level === '+') {
      if (!allowWildcards) return fail('FG_ERR_PARSE_TOPIC', `wildcard "${level}" is only allowed when subscribing`);
      // [MQTT-4.7.1-2] the multi-level wildcard must be the last level.
      if (level === '#' && i !== levels.length - 1) return fail('FG_ERR_PARSE_TOPIC', '"#" must be the last subtopic level');
      wildcard = true;
      continue;
    }
    if (level.length === 0) return fail('FG_ERR_PARSE_TOPIC', 'subtopic has an empty level');
    if (!isPlainLevel(level)) return fail('FG_ERR_PARSE_TOPIC', `subtopic level "${level}" holds a forbidden character`);
  }
  const subtopic = levels.length > first ? levels.slice(first).join('/') : null;
  return ok({ domain, channel, subtopic, wildcard });
}

/** A publish needs one concrete topic. */
export function requireConcreteTarget(target: Target): Result<Target> {
  return target.wildcard ? fail('FG_ERR_PARSE_TOPIC', 'cannot publish to a wildcard subtopic') : ok(target);
}

/** `application/SenML+JSON; charset=utf-8` -> `application/senml+json`; empty -> undefined. */
export function parseMediaType(header: string): string | undefined {
  const semi = header.indexOf(';');
  const type = (semi < 0 ? header : header.slice(0, semi)).trim().toLowerCase();
  return type.length === 0 ? undefined : type;
}

// No whitespace or control characters (U+0000 included [MQTT-1.5.3-2]), no NATS wildcards "*" / ">", no "/" (one
// level), and "+" / "#" only as whole levels.
const kForbidden = /[\s\u0000-\u001f\u007f*>/+#]/;

function isPlainLevel(level: string): boolean {
  return !kForbidden.test(level);
}

function decodeLevels(levels: string[]): string[] | undefined {
  try {
    return levels.map(decodeURIComponent);
  } catch {
    return undefined;
  }
}
