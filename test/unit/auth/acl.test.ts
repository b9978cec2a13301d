import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aclPermissions, fillAcl, parseAcl, parseRoleAcl, type AclRule } from '../../../src/auth/acl.ts';
import { Provisioning } from '../../../src/registry/service.ts';
import { openSqliteStore } from '../../../src/registry/sqlite-store.ts';
import type { Store } from '../../../src/registry/store.ts';
import { kPermission, type Channel } from '../../../src/registry/types.ts';
import { RegistryView } from '../../../src/registry/view.ts';

const kBoth = kPermission.publish | kPermission.subscribe;
let dir: string;
let store: Store;
let view: RegistryView;
let telemetry: Channel;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-acl-'));
  store = openSqliteStore(`sqlite:${join(dir, 'db')}`);
  view = new RegistryView(store);
  await view.load();
  const p = new Provisioning(store, view);
  const plant = await p.createDomain({ name: 'plant', route: 'plant' });
  telemetry = await p.createChannel(plant.id, { name: 'telemetry', route: 'telemetry' });
  const other = await p.createDomain({ name: 'dom-b', route: 'dom-b' });
  await p.createChannel(other.id, { name: 'telemetry', route: 'telemetry' });
});
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const rulesOf = (written: unknown): AclRule[] => {
  const rules = parseAcl(written);
  if (typeof rules === 'string') throw new Error(rules);
  return rules;
};
/** The kPermission bits a connection with these names gets on plant/telemetry for a subtopic (or filter). */
const granted = (written: unknown, names: { clientId: string; username: string }, subtopic: string | null) =>
  aclPermissions(view, fillAcl(rulesOf(written), names), telemetry, subtopic);

// Each bad value, and what the rule `.../%x/#` (or `.../dev-%x` for the empty value) would have granted with it.
const kBadValues: { desc: string; value: string; escapes: (string | null)[] }[] = [
  { desc: 'a single-level wildcard', value: '+', escapes: ['thermostat-9/t', 'thermostat-9/#'] },
  { desc: 'a multi-level wildcard', value: '#', escapes: [null, '#', 'thermostat-9/t'] },
  { desc: 'two levels', value: 'a/b', escapes: ['a/b', 'a/b/#'] },
  { desc: 'U+0000', value: '\u0000', escapes: ['\u0000/t'] },
  { desc: 'a $ name', value: '$x', escapes: ['$x/t', '$x/#'] },
  { desc: 'an empty name', value: '', escapes: ['dev-'] },
];

describe('ACL placeholders (%u, %c)', () => {
  const rules = (p: string) => [
    { permission: 'allow', action: 'all', topic: `m/plant/c/telemetry/${p}/#` },
    { permission: 'allow', action: 'all', topic: `m/plant/c/telemetry/dev-${p}` },
  ];
  for (const placeholder of ['%u', '%c'] as const) {
    const namesWith = (value: string) => (placeholder === '%u' ? { username: value, clientId: 'dev-1' } : { clientId: value, username: 'dev-1' });
    it(`${placeholder} with a good name grants its own subtree only`, () => {
      expect(granted(rules(placeholder), namesWith('dev-1'), 'dev-1/t')).toBe(kBoth);
      expect(granted(rules(placeholder), namesWith('dev-1'), 'dev-dev-1')).toBe(kBoth);
      expect(granted(rules(placeholder), namesWith('dev-1'), 'thermostat-9/t')).toBe(0);
    });
    for (const { desc, value, escapes } of kBadValues) {
      it(`${placeholder} holding ${desc} (${JSON.stringify(value)}): the rule matches nothing, publish or subscribe`, () => {
        for (const subtopic of escapes) expect(granted(rules(placeholder), namesWith(value), subtopic), String(subtopic)).toBe(0);
      });
    }
  }

  it('a deny rule a name cannot fill denies as if the name were "+" (fails closed)', () => {
    const written = [{ permission: 'deny', action: 'all', topic: 'm/plant/c/telemetry/%u/secret' }, { permission: 'allow', action: 'all', topic: 'm/plant/c/telemetry/#' }];
    for (const username of ['a/b', '#', '+', '$x', '']) {
      expect(granted(written, { username, clientId: 'c' }, 'alice/secret'), username).toBe(0);
      expect(granted(written, { username, clientId: 'c' }, 'alice/other'), username).toBe(kBoth);
    }
  });

  it('fills in one pass: a name that spells a placeholder is taken literally', () => {
    const written = { all: ['m/plant/c/telemetry/%u/%c/#'] };
    expect(granted(written, { username: 'x', clientId: '%u' }, 'x/%u/t')).toBe(kBoth);
    expect(granted(written, { username: '+', clientId: '%u' }, 'anyone/+/t')).toBe(0);
    expect(granted({ all: ['m/plant/c/telemetry/%c/#'] }, { username: '+', clientId: '%u' }, 'thermostat-9/t')).toBe(0);
  });

  it('refuses a placeholder in the domain or channel level: the connection must not choose the domain', () => {
    for (const topic of ['m/%u/c/telemetry/#', 'm/plant/c/%c/#', 'm/x%u/c/telemetry', 'channels/%c/messages/#', '%u/#']) {
      expect(parseAcl([{ permission: 'allow', action: 'all', topic }]), topic).toBe(`"${topic}": %c and %u may only stand in subtopic levels, after the channel`);
      expect(parseAcl({ pub: [topic] }), topic).toMatch(/may only stand in subtopic levels/);
    }
    expect(parseRoleAcl('{"sensor": {"pub": ["m/%u/c/telemetry/#"]}}')).toBe('rules of role "sensor" are malformed: "m/%u/c/telemetry/#": %c and %u may only stand in subtopic levels, after the channel');
    expect(rulesOf({ pub: ['m/plant/c/telemetry/%u/x%c/#'] })).toHaveLength(1);
  });
});
