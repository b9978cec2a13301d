import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { kMigrations } from './migrations.ts';
import { kChangeLogKeep, toChange, toChannel, toClient, toConnection, toDomain, toMembership, toSession, toSigningKey, toUser, type Row } from './rows.ts';
import { StoreConflictError, type Store } from './store.ts';
import type { Connection, Snapshot } from './types.ts';

/** `sqlite:./data/fleetgate.db` or `sqlite::memory:`. The embedded default: one file, no server. */
export function openSqliteStore(url: string): Store {
  const path = url.slice('sqlite:'.length);
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  // The CLI and a running gateway share the file: wait for the other's write instead of failing.
  db.pragma('busy_timeout = 5000');
  migrate(db);

  const stmt = (sql: string) => db.prepare(sql);
  const q = {
    record: stmt('INSERT INTO changes (entity, entity_id) VALUES (?, ?)'),
    changesSince: stmt('SELECT id, entity, entity_id FROM changes WHERE id > ? ORDER BY id LIMIT 10000'),
    oldestChange: stmt('SELECT COALESCE(MIN(id), 0) AS id FROM changes'),
    lastChange: stmt('SELECT COALESCE(MAX(id), 0) AS id FROM changes'),
    getDomain: stmt('SELECT * FROM domains WHERE id = ?'),
    getClient: stmt('SELECT * FROM clients WHERE id = ?'),
    getChannel: stmt('SELECT * FROM channels WHERE id = ?'),
    connectionsOfClient: stmt('SELECT * FROM connections WHERE client_id = ?'),
    clientsOfChannel: stmt('SELECT DISTINCT client_id FROM connections WHERE channel_id = ?'),
    listDomains: stmt('SELECT * FROM domains ORDER BY created_at, id'),
    listClients: stmt('SELECT * FROM clients WHERE domain_id = ? ORDER BY created_at, id'),
    listChannels: stmt('SELECT * FROM channels WHERE domain_id = ? ORDER BY created_at, id'),
    allDomains: stmt('SELECT * FROM domains'),
    allClients: stmt('SELECT * FROM clients'),
    allChannels: stmt('SELECT * FROM channels'),
    allConnections: stmt('SELECT * FROM connections'),
    insertDomain: stmt('INSERT INTO domains (id, name, route, created_at) VALUES (?, ?, ?, ?)'),
    insertClient: stmt('INSERT INTO clients (id, domain_id, name, secret_digest, external_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    insertChannel: stmt('INSERT INTO channels (id, domain_id, name, route, payload_format, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
    setSecret: stmt('UPDATE clients SET secret_digest = ? WHERE id = ?'),
    setStatus: stmt('UPDATE clients SET status = ? WHERE id = ?'),
    deleteClient: stmt('DELETE FROM clients WHERE id = ?'),
    deleteChannel: stmt('DELETE FROM channels WHERE id = ?'),
    connect: stmt('INSERT INTO connections (client_id, channel_id, type) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
    disconnect: stmt('DELETE FROM connections WHERE client_id = ? AND channel_id = ? AND type = ?'),
    allUsers: stmt('SELECT * FROM users'),
    liveSessions: stmt('SELECT * FROM sessions WHERE revoked_at IS NULL AND expires_at > ?'),
    allMemberships: stmt('SELECT * FROM domain_members'),
    getUser: stmt('SELECT * FROM users WHERE id = ?'),
    getUserByEmail: stmt('SELECT * FROM users WHERE email = ?'),
    getUserByUsername: stmt('SELECT * FROM users WHERE username = ?'),
    insertUser: stmt('INSERT INTO users (id, email, username, name, password_hash, role, status, created_at, picture, locale) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    getUserByIdentity: stmt('SELECT users.* FROM users JOIN user_identities ON users.id = user_identities.user_id WHERE provider = ? AND subject = ?'),
    insertIdentity: stmt('INSERT INTO user_identities (provider, subject, user_id, created_at) VALUES (?, ?, ?, ?)'),
    setUserPassword: stmt('UPDATE users SET password_hash = ? WHERE id = ?'),
    setUserRole: stmt('UPDATE users SET role = ? WHERE id = ?'),
    setUserStatus: stmt('UPDATE users SET status = ? WHERE id = ?'),
    getSession: stmt('SELECT * FROM sessions WHERE id = ?'),
    listSessions: stmt('SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at, id'),
    insertSession: stmt('INSERT INTO sessions (id, user_id, refresh_jti, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)'),
    setSessionJti: stmt('UPDATE sessions SET refresh_jti = ? WHERE id = ?'),
    revokeSession: stmt('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
    memberships: stmt('SELECT domain_id FROM domain_members WHERE user_id = ?'),
    addMember: stmt('INSERT INTO domain_members (domain_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING'),
    removeMember: stmt('DELETE FROM domain_members WHERE domain_id = ? AND user_id = ?'),
    listSigningKeys: stmt('SELECT * FROM signing_keys ORDER BY created_at, kid'),
    insertSigningKey: stmt('INSERT INTO signing_keys (kid, alg, jwk, status, created_at) VALUES (?, ?, ?, ?, ?)'),
    setSigningKeyStatus: stmt('UPDATE signing_keys SET status = ? WHERE kid = ?'),
    useToken: stmt('INSERT INTO used_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING'),
    pruneUsedTokens: stmt('DELETE FROM used_tokens WHERE expires_at < ?'),
  };

  /** Runs `fn` in a transaction and turns unique-constraint violations into StoreConflictError. */
  function write<T>(fn: () => T): T {
    try {
      return db.transaction(fn)();
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        const field = /UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)/.exec(e.message ?? '')?.[1] ?? 'record';
        throw new StoreConflictError(field.split(', ').map((f) => f.split('.').pop()!.replace('secret_digest', 'secret')).join(', '));
      }
      throw err;
    }
  }

  const store: Store = {
    async snapshot(): Promise<Snapshot> {
      return db.transaction(() => ({
        domains: q.allDomains.all().map((r) => toDomain(r as Row)),
        clients: q.allClients.all().map((r) => toClient(r as Row)),
        channels: q.allChannels.all().map((r) => toChannel(r as Row)),
        connections: q.allConnections.all().map((r) => toConnection(r as Row)),
        users: q.allUsers.all().map((r) => toUser(r as Row)),
        sessions: q.liveSessions.all(Math.floor(Date.now() / 1000)).map((r) => toSession(r as Row)),
        memberships: q.allMemberships.all().map((r) => toMembership(r as Row)),
        lastChange: (q.lastChange.get() as { id: number }).id,
      }))();
    },
    async changesSince(id) {
      const changes = q.changesSince.all(id).map((r) => toChange(r as Row));
      return { changes, oldest: (q.oldestChange.get() as { id: number }).id };
    },
    async getDomain(id) {
      const r = q.getDomain.get(id) as Row | undefined;
      return r && toDomain(r);
    },
    async getClient(id) {
      const r = q.getClient.get(id) as Row | undefined;
      return r && toClient(r);
    },
    async getChannel(id) {
      const r = q.getChannel.get(id) as Row | undefined;
      return r && toChannel(r);
    },
    async connectionsOfClient(clientId) {
      return q.connectionsOfClient.all(clientId).map((r) => toConnection(r as Row));
    },
    async listDomains() {
      return q.listDomains.all().map((r) => toDomain(r as Row));
    },
    async listClients(domainId) {
      return q.listClients.all(domainId).map((r) => toClient(r as Row));
    },
    async listChannels(domainId) {
      return q.listChannels.all(domainId).map((r) => toChannel(r as Row));
    },
    async insertDomain(d) {
      write(() => {
        q.insertDomain.run(d.id, d.name, d.route, d.createdAt);
        q.record.run('domain', d.id);
      });
    },
    async insertClient(c) {
      write(() => {
        q.insertClient.run(c.id, c.domainId, c.name, c.secretDigest, c.externalId, c.status, c.createdAt);
        q.record.run('client', c.id);
      });
    },
    async insertChannel(ch) {
      write(() => {
        q.insertChannel.run(ch.id, ch.domainId, ch.name, ch.route, ch.payloadFormat, ch.createdAt);
        q.record.run('channel', ch.id);
      });
    },
    async updateClient(id, patch) {
      return write(() => {
        let changed = 0;
        if (patch.secretDigest !== undefined) changed += q.setSecret.run(patch.secretDigest, id).changes;
        if (patch.status !== undefined) changed += q.setStatus.run(patch.status, id).changes;
        if (changed > 0) q.record.run('client', id);
        return changed > 0;
      });
    },
    async deleteClient(id) {
      return write(() => {
        const gone = q.deleteClient.run(id).changes > 0;
        if (gone) q.record.run('client', id);
        return gone;
      });
    },
    async deleteChannel(id) {
      return write(() => {
        // The cascade drops the channel's connections: tell every view which clients lost one.
        const clients = q.clientsOfChannel.all(id) as { client_id: string }[];
        const gone = q.deleteChannel.run(id).changes > 0;
        if (gone) {
          q.record.run('channel', id);
          for (const c of clients) q.record.run('connections', c.client_id);
        }
        return gone;
      });
    },
    async connect(connections) {
      return write(() => applyConnections(q.connect, connections));
    },
    async disconnect(connections) {
      return write(() => applyConnections(q.disconnect, connections));
    },
    async getUser(id) {
      const r = q.getUser.get(id) as Row | undefined;
      return r && toUser(r);
    },
    async getUserByLogin(login) {
      const r = (login.includes('@') ? q.getUserByEmail.get(login) : q.getUserByUsername.get(login)) as Row | undefined;
      return r && toUser(r);
    },
    async insertUser(u, identity) {
      write(() => {
        q.insertUser.run(u.id, u.email, u.username, u.name, u.passwordHash, u.role, u.status, u.createdAt, u.picture, u.locale);
        if (identity !== undefined) q.insertIdentity.run(identity.provider, identity.subject, identity.userId, identity.createdAt);
        q.record.run('user', u.id);
      });
    },
    async getUserByIdentity(provider, subject) {
      const r = q.getUserByIdentity.get(provider, subject) as Row | undefined;
      return r && toUser(r);
    },
    async insertIdentity(i) {
      write(() => void q.insertIdentity.run(i.provider, i.subject, i.userId, i.createdAt));
    },
    async updateUser(id, patch) {
      write(() => {
        if (patch.passwordHash !== undefined) q.setUserPassword.run(patch.passwordHash, id);
        if (patch.role !== undefined) q.setUserRole.run(patch.role, id);
        if (patch.status !== undefined) q.setUserStatus.run(patch.status, id);
        q.record.run('user', id);
      });
    },
    async getSession(id) {
      const r = q.getSession.get(id) as Row | undefined;
      return r && toSession(r);
    },
    async listSessions(userId) {
      return q.listSessions.all(userId).map((r) => toSession(r as Row));
    },
    async insertSession(x) {
      write(() => {
        q.insertSession.run(x.id, x.userId, x.refreshJti, x.createdAt, x.expiresAt, x.revokedAt);
        q.record.run('session', x.id);
      });
    },
    async updateSession(id, patch) {
      write(() => {
        if (patch.refreshJti !== undefined) q.setSessionJti.run(patch.refreshJti, id);
        if (patch.revokedAt !== undefined) q.revokeSession.run(patch.revokedAt, id);
        q.record.run('session', id);
      });
    },
    async memberships(userId) {
      return (q.memberships.all(userId) as { domain_id: string }[]).map((r) => r.domain_id);
    },
    async addMembers(domainId, userIds) {
      return write(() => applyMembers(q.addMember, domainId, userIds));
    },
    async removeMembers(domainId, userIds) {
      return write(() => applyMembers(q.removeMember, domainId, userIds));
    },
    async listSigningKeys() {
      return q.listSigningKeys.all().map((r) => toSigningKey(r as Row));
    },
    async insertSigningKey(k) {
      write(() => {
        q.insertSigningKey.run(k.kid, k.alg, k.jwk, k.status, k.createdAt);
        q.record.run('keys', k.kid);
      });
    },
    async setSigningKeyStatus(kid, status) {
      return write(() => {
        const changed = q.setSigningKeyStatus.run(status, kid).changes > 0;
        if (changed) q.record.run('keys', kid);
        return changed;
      });
    },
    async useToken(jti, expiresAt) {
      return write(() => {
        q.pruneUsedTokens.run(Math.floor(Date.now() / 1000));
        return q.useToken.run(jti, expiresAt).changes > 0;
      });
    },
    async close() {
      db.close();
    },
  };

  function applyMembers(statement: Database.Statement, domainId: string, userIds: readonly string[]): number {
    let changed = 0;
    for (const userId of userIds) {
      if (statement.run(domainId, userId).changes > 0) {
        changed++;
        q.record.run('membership', userId);
      }
    }
    return changed;
  }

  function applyConnections(statement: Database.Statement, connections: readonly Connection[]): number {
    let changed = 0;
    const clients = new Set<string>();
    for (const c of connections) {
      if (statement.run(c.clientId, c.channelId, c.type).changes > 0) {
        changed++;
        clients.add(c.clientId);
      }
    }
    for (const id of clients) q.record.run('connections', id);
    return changed;
  }

  return store;
}

function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
  // IMMEDIATE takes the write lock first, so two processes opening a new file do not both migrate it.
  db.transaction(() => {
    const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
    for (const m of kMigrations) {
      if (applied.has(m.version)) continue;
      db.exec(m.sql('sqlite'));
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, new Date().toISOString());
    }
    // The change log only has to cover the gap a view can fall behind by; a view behind the oldest row reloads all.
    db.prepare('DELETE FROM changes WHERE id < (SELECT MAX(id) FROM changes) - ?').run(kChangeLogKeep);
  }).immediate();
}
