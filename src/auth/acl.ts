import { splitSubtopic } from '../fanout/topic.ts';
import type { RegistryView } from '../registry/view.ts';
import { kPermission, type Channel } from '../registry/types.ts';

/**
 * Channel permissions carried by an identity provider's token (DESIGN.md §4.2), EMQX style, in the claim named by
 * FLEETGATE_OIDC_ACL_CLAIM, or given to the token's roles by FLEETGATE_OIDC_ROLE_ACL. Either a list of rules, checked
 * in order, the first match deciding:
 *   [{"permission": "allow"|"deny", "action": "publish"|"subscribe"|"all", "topic": "m/<domain>/c/<channel>/%c/#"}]
 * or the short form {"pub": [topics], "sub": [topics], "all": [topics]} (all allow). Topics are MQTT filters over
 * fleetgate topics (`m/D/c/C[/S]`, `channels/C/messages[/S]`; D and C ids or routes, or "+"); `%c` is the MQTT client
 * id and `%u` the username, both the token's subject outside MQTT. No matching rule: denied.
 * Placeholders (docs/SECURITY.md): only in subtopic levels, so that the domain and channel a rule reaches are always
 * the ones its writer (the provider, or the operator's role table) named, never a name the connection chose; a rule
 * with one in D or C is malformed. A value fills exactly one level: one that is empty, starts with `$` or holds `+`,
 * `#`, `/` or U+0000 makes its rule match nothing (Mosquitto's rule), except that a deny rule then denies as if the
 * value were `+` (failing closed: a dropped deny could let a later allow through).
 */
export interface AclRule {
  readonly allow: boolean;
  readonly mask: number;
  readonly topic: string;
}

const kActionMask: Record<string, number> = {
  publish: kPermission.publish, pub: kPermission.publish,
  subscribe: kPermission.subscribe, sub: kPermission.subscribe,
  all: kPermission.publish | kPermission.subscribe,
};

const kPlaceholder = /%[cu]/g;

/** Parses rules as written, placeholders kept (fillAcl() puts the names in); a string says what is malformed. */
export function parseAcl(claim: unknown): AclRule[] | string {
  const rules: AclRule[] = [];
  if (Array.isArray(claim)) {
    for (const r of claim as unknown[]) {
      const rule = r as { permission?: unknown; action?: unknown; topic?: unknown };
      const mask = typeof rule.action === 'string' ? kActionMask[rule.action] : undefined;
      if (mask === undefined || typeof rule.topic !== 'string') return 'each rule needs an action (publish, subscribe, all) and a topic';
      rules.push({ allow: rule.permission !== 'deny', mask, topic: rule.topic });
    }
  } else if (typeof claim === 'object' && claim !== null) {
    for (const [action, topics] of Object.entries(claim as Record<string, unknown>)) {
      const mask = kActionMask[action];
      if (mask === undefined || !Array.isArray(topics) || !topics.every((t) => typeof t === 'string')) return 'expected {"pub"|"sub"|"all": [topics]}';
      for (const topic of topics as string[]) rules.push({ allow: true, mask, topic });
    }
  } else {
    return 'expected a list of rules or {"pub"|"sub"|"all": [topics]}';
  }
  const misplaced = rules.find((rule) => placeholderOutsideSubtopic(rule.topic));
  return misplaced === undefined ? rules : `"${misplaced.topic}": %c and %u may only stand in subtopic levels, after the channel`;
}

/** Is there a placeholder in a domain or channel level (or anywhere in a topic that is not a fleetgate one)? */
function placeholderOutsideSubtopic(topic: string): boolean {
  const levels = topic.split('/');
  const fixed = levels[0] === 'm' ? 4 : levels[0] === 'channels' ? 3 : levels.length;
  return levels.slice(0, fixed).some((level) => level.search(kPlaceholder) >= 0);
}

/** What a placeholder may stand for: exactly one plain topic level. */
function isPlaceholderValue(value: string): boolean {
  return value !== '' && !value.startsWith('$') && !/[+#/\u0000]/.test(value);
}

/**
 * The rules with `%c` and `%u` replaced by a connection's names, in one pass (a name holding `%u` stays as it is).
 * A rule a name cannot fill is dropped, or widened to `+` at that level if it denies (see the top of this file).
 */
export function fillAcl(rules: readonly AclRule[], names: { clientId: string; username: string }): AclRule[] {
  const filled: AclRule[] = [];
  for (const rule of rules) {
    let fits = true;
    const topic = rule.topic.split('/').map((level) => {
      let levelFits = true;
      const value = level.replace(kPlaceholder, (p) => {
        const name = p === '%c' ? names.clientId : names.username;
        if (!isPlaceholderValue(name)) levelFits = false;
        return name;
      });
      fits &&= levelFits;
      return levelFits ? value : '+';
    }).join('/');
    if (fits || !rule.allow) filled.push({ ...rule, topic });
  }
  return filled;
}

/**
 * FLEETGATE_OIDC_ROLE_ACL: a JSON object giving each role the rules (either form) a token with that role gets, e.g.
 * `{"sensor": [{"permission": "allow", "action": "publish", "topic": "m/plant/c/telemetry/%u/#"}]}`.
 * Returns the table in its written order, or what is wrong with it.
 */
export function parseRoleAcl(json: string): ReadonlyMap<string, readonly AclRule[]> | string {
  const roles = new Map<string, AclRule[]>();
  if (json === '') return roles;
  let table: unknown;
  try {
    table = JSON.parse(json);
  } catch {
    return 'not JSON';
  }
  if (typeof table !== 'object' || table === null || Array.isArray(table)) return 'must be a JSON object: role -> rules';
  for (const [role, written] of Object.entries(table)) {
    const rules = parseAcl(written);
    if (typeof rules === 'string') return `rules of role "${role}" are malformed: ${rules}`;
    roles.set(role, rules);
  }
  return roles;
}

/**
 * The kPermission bits the rules grant on a channel for a subtopic (a concrete one to publish, a filter to subscribe).
 * A rule's topic is resolved against the registry (routes -> ids) before matching; a subscription filter is granted
 * only if the rule's filter covers all of it.
 */
export function aclPermissions(view: RegistryView, rules: readonly AclRule[], channel: Channel, subtopic: string | null): number {
  const target = [channel.domainId, channel.id, ...splitSubtopic(subtopic)];
  let decided = 0;
  let granted = 0;
  for (const rule of rules) {
    const filter = canonical(view, rule.topic);
    if (filter === undefined || !covers(filter, target)) continue;
    // First match decides, per action.
    const fresh = rule.mask & ~decided;
    decided |= fresh;
    if (rule.allow) granted |= fresh;
  }
  return granted;
}

/** `m/D/c/C/...` or `channels/C/messages/...` -> [domainId|+, channelId|+, ...levels], or undefined. */
function canonical(view: RegistryView, topic: string): string[] | undefined {
  const levels = topic.split('/');
  if (levels.length === 1 && levels[0] === '#') return ['#'];
  if (levels[0] === 'm' && levels[2] === 'c' && levels.length >= 4) {
    const d = levels[1]!;
    const c = levels[3]!;
    const domainId = d === '+' ? '+' : view.domain(d)?.id;
    if (domainId === undefined) return undefined;
    const channelId = c === '+' || c === '#' ? c : domainId === '+' ? view.channelById(c)?.id : view.channel(domainId, c)?.id;
    return channelId === undefined ? undefined : [domainId, channelId, ...levels.slice(4)];
  }
  if (levels[0] === 'channels' && levels[2] === 'messages' && levels.length >= 3) {
    const channelId = view.channelById(levels[1]!)?.id;
    return channelId === undefined ? undefined : ['+', channelId, ...levels.slice(3)];
  }
  return undefined;
}

/** Does filter `rule` match every topic that filter (or topic) `target` matches? [MQTT-4.7] wildcard semantics. */
function covers(rule: readonly string[], target: readonly string[]): boolean {
  for (let i = 0; i < rule.length; i++) {
    const r = rule[i];
    if (r === '#') return true;
    const t = target[i];
    if (t === undefined || t === '#') return false;
    if (r === '+') continue;
    if (t === '+' || r !== t) return false;
  }
  return rule.length === target.length;
}
