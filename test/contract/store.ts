import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreConflictError, type Store } from '../../src/registry/store.ts';
import type { Channel, Client, Domain, Session, User } from '../../src/registry/types.ts';

/**
 * What every registry store must do, run against each (SQLite, PostgreSQL): the same records, conflicts, cascades,
 * change log and single-use tokens, so the gateway cannot tell them apart.
 */
export function storeContract(name: string, open: () => Promise<{ store: Store; close(): Promise<void> }>): void {
  describe(`${name} store (conformance)`, () => {
    let store: Store;
    let close: () => Promise<void>;
    const now = new Date().toISOString();
    const domain = (route: string | null = null): Domain => ({ id: randomUUID(), name: 'd', route, createdAt: now });
    const client = (domainId: string, secretDigest: string = randomUUID()): Client =>
      ({ id: randomUUID(), domainId, name: 'c', secretDigest, externalId: null, status: 'enabled', createdAt: now });
    const channel = (domainId: string, route: string | null = null): Channel =>
      ({ id: randomUUID(), domainId, name: 'ch', route, payloadFormat: 'senml+json', createdAt: now });
    const user = (email: string): User =>
      ({ id: randomUUID(), email, username: null, name: null, passwordHash: 'h', role: 'user', status: 'enabled', createdAt: now, picture: null, locale: null });

    /** a domain with one client and one channel, stored */
    const trio = async () => {
      const d = domain();
      await store.insertDomain(d);
      const c = client(d.id);
      await store.insertClient(c);
      const ch = channel(d.id);
      await store.insertChannel(ch);
      return { d, c, ch };
    };

    beforeAll(async () => {
      ({ store, close } = await open());
    });
    afterAll(async () => close?.());

    it('reads back what it stores, and lists by domain in creation order', async () => {
      const d = domain('plant-' + randomUUID().slice(0, 8));
      await store.insertDomain(d);
      const [c1, c2] = [client(d.id), client(d.id)];
      await store.insertClient(c1);
      await store.insertClient(c2);
      const ch = channel(d.id, 'tele');
      await store.insertChannel(ch);
      expect(await store.getDomain(d.id)).toEqual(d);
      expect(await store.getClient(c1.id)).toEqual(c1);
      expect(await store.getChannel(ch.id)).toEqual(ch);
      expect((await store.listClients(d.id)).map((c) => c.id).sort()).toEqual([c1.id, c2.id].sort());
      expect(await store.listChannels(d.id)).toEqual([ch]);
      expect(await store.getClient(randomUUID())).toBeUndefined();
    });

    it('refuses duplicates with a conflict naming the field', async () => {
      const d = domain('dup-' + randomUUID().slice(0, 8));
      await store.insertDomain(d);
      await expect(store.insertDomain({ ...domain(d.route) })).rejects.toThrow(StoreConflictError);
      const c = client(d.id);
      await store.insertClient(c);
      await expect(store.insertClient(client(d.id, c.secretDigest))).rejects.toMatchObject({ field: 'secret' });
      const email = `${randomUUID()}@example.com`;
      await store.insertUser(user(email));
      await expect(store.insertUser(user(email))).rejects.toMatchObject({ field: 'email' });
      await store.insertChannel(channel(d.id, 'same'));
      await expect(store.insertChannel(channel(d.id, 'same'))).rejects.toMatchObject({ field: 'domain_id, route' });
    });

    it('connects and disconnects, counting only real changes, and logs the clients whose connections changed', async () => {
      const { c, ch } = await trio();
      const { changes: before } = await store.changesSince(0);
      const last = before.at(-1)?.id ?? 0;
      const conns = [{ clientId: c.id, channelId: ch.id, type: 'publish' as const }, { clientId: c.id, channelId: ch.id, type: 'subscribe' as const }];
      expect(await store.connect(conns)).toBe(2);
      expect(await store.connect(conns)).toBe(0);
      expect((await store.connectionsOfClient(c.id)).map((x) => x.type).sort()).toEqual(['publish', 'subscribe']);
      expect(await store.disconnect([conns[0]!])).toBe(1);
      const { changes } = await store.changesSince(last);
      expect(changes.map((x) => [x.entity, x.entityId])).toEqual([['connections', c.id], ['connections', c.id]]);
      expect(changes[0]!.id).toBeGreaterThan(last);
      expect(changes[1]!.id).toBeGreaterThan(changes[0]!.id);
    });

    it('deleting a channel drops its connections and logs the clients that lost one', async () => {
      const { c, ch } = await trio();
      await store.connect([{ clientId: c.id, channelId: ch.id, type: 'publish' }]);
      const last = (await store.snapshot()).lastChange;
      expect(await store.deleteChannel(ch.id)).toBe(true);
      expect(await store.deleteChannel(ch.id)).toBe(false);
      expect(await store.connectionsOfClient(c.id)).toEqual([]);
      expect((await store.changesSince(last)).changes.map((x) => [x.entity, x.entityId])).toEqual([['channel', ch.id], ['connections', c.id]]);
    });

    it('lists a domain\'s connections and deletes a domain with everything in it, logging each thing that went', async () => {
      const { d, c, ch } = await trio();
      const u = user(`${randomUUID()}@example.com`);
      await store.insertUser(u);
      await store.addMembers(d.id, [u.id]);
      await store.connect([{ clientId: c.id, channelId: ch.id, type: 'publish' }]);
      expect(await store.listConnections(d.id)).toEqual([{ clientId: c.id, channelId: ch.id, type: 'publish' }]);
      const last = (await store.snapshot()).lastChange;
      expect(await store.deleteDomain(d.id)).toBe(true);
      expect(await store.deleteDomain(d.id)).toBe(false);
      expect([await store.getDomain(d.id), await store.getClient(c.id), await store.getChannel(ch.id)]).toEqual([undefined, undefined, undefined]);
      expect(await store.memberships(u.id)).toEqual([]);
      expect((await store.changesSince(last)).changes.map((x) => [x.entity, x.entityId]).sort()).toEqual(
        [['channel', ch.id], ['client', c.id], ['domain', d.id], ['membership', u.id]].sort());
    });

    it('updates a client (secret, status) and deletes it', async () => {
      const d = domain();
      await store.insertDomain(d);
      const c = client(d.id);
      await store.insertClient(c);
      expect(await store.updateClient(c.id, { secretDigest: 'rotated-' + c.id, status: 'disabled' })).toBe(true);
      expect(await store.getClient(c.id)).toMatchObject({ secretDigest: 'rotated-' + c.id, status: 'disabled' });
      expect(await store.updateClient(randomUUID(), { status: 'enabled' })).toBe(false);
      expect(await store.deleteClient(c.id)).toBe(true);
      expect(await store.getClient(c.id)).toBeUndefined();
    });

    it('keeps users, identities, sessions and memberships', async () => {
      const u = user(`${randomUUID()}@example.com`);
      await store.insertUser({ ...u, username: 'name-' + u.id.slice(0, 8) }, { provider: 'google', subject: 'sub-' + u.id, userId: u.id, createdAt: now });
      expect((await store.getUserByLogin(u.email))?.id).toBe(u.id);
      expect((await store.getUserByLogin('name-' + u.id.slice(0, 8)))?.id).toBe(u.id);
      expect((await store.getUserByIdentity('google', 'sub-' + u.id))?.id).toBe(u.id);
      await store.updateUser(u.id, { role: 'admin', status: 'disabled' });
      expect(await store.getUser(u.id)).toMatchObject({ role: 'admin', status: 'disabled' });
      const s: Session = { id: randomUUID(), userId: u.id, refreshJti: 'j1', createdAt: now, expiresAt: Math.floor(Date.now() / 1000) + 3600, revokedAt: null };
      await store.insertSession(s);
      await store.updateSession(s.id, { refreshJti: 'j2' });
      expect(await store.getSession(s.id)).toEqual({ ...s, refreshJti: 'j2' });
      expect((await store.snapshot()).sessions.map((x) => x.id)).toContain(s.id);
      await store.updateSession(s.id, { revokedAt: now });
      expect((await store.snapshot()).sessions.map((x) => x.id)).not.toContain(s.id);
      expect(await store.listSessions(u.id)).toHaveLength(1);
      const d = domain();
      await store.insertDomain(d);
      expect(await store.addMembers(d.id, [u.id])).toBe(1);
      expect(await store.addMembers(d.id, [u.id])).toBe(0);
      expect(await store.memberships(u.id)).toEqual([d.id]);
      expect(await store.removeMembers(d.id, [u.id])).toBe(1);
    });

    it('keeps signing keys and their status', async () => {
      const kid = randomUUID();
      await store.insertSigningKey({ kid, alg: 'EdDSA', jwk: '{"k":1}', status: 'active', createdAt: now });
      expect(await store.setSigningKeyStatus(kid, 'retired')).toBe(true);
      expect((await store.listSigningKeys()).find((k) => k.kid === kid)).toMatchObject({ status: 'retired', jwk: '{"k":1}' });
      expect(await store.setSigningKeyStatus(randomUUID(), 'retired')).toBe(false);
      // sealing a key in place changes its stored form only: no change is logged
      const last = (await store.snapshot()).lastChange;
      await store.replaceSigningKeyJwk(kid, 'sealed:...');
      expect((await store.listSigningKeys()).find((k) => k.kid === kid)?.jwk).toBe('sealed:...');
      expect((await store.changesSince(last)).changes).toEqual([]);
    });

    it('lets a single-use token be used once, also when two uses race', async () => {
      const jti = randomUUID();
      const exp = Math.floor(Date.now() / 1000) + 300;
      const results = await Promise.all([store.useToken(jti, exp), store.useToken(jti, exp), store.useToken(jti, exp)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await store.useToken(jti, exp)).toBe(false);
    });

    it('gives a snapshot whose lastChange is the newest change-log entry', async () => {
      const d = domain();
      await store.insertDomain(d);
      const snap = await store.snapshot();
      expect(snap.domains.map((x) => x.id)).toContain(d.id);
      expect((await store.changesSince(snap.lastChange)).changes).toEqual([]);
    });
  });
}
