import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { kSettings } from '../config.ts';
import { GatewayError } from '../errors.ts';
import { kMigrations } from './migrations.ts';
import { kChangeLogKeep, toChange, toChannel, toClient, toConnection, toDomain, toMembership, toSession, toSigningKey, toUser, type Row } from './rows.ts';
import { whenUnlockedAll, type Synchronous } from './sqlite-busy.ts';
import { StoreConflictError, type Store } from './store.ts';
import type { Connection, Snapshot } from './types.ts';

/**
 * The store holds password hashes and sealed signing keys: a new data directory is made 0700, and the database file
 * 0600 before SQLite opens it (SQLite gives -wal and -shm the database file's mode). Files an older version left
 * readable by others are narrowed to 0600; an existing directory is left as it is (it may be shared).
 */
export function ownerOnly(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    const mode = statSync(file, { throwIfNoEntry: false })?.mode;
    if (mode !== undefined && (mode & 0o077) !== 0) chmodSync(file, 0o600);
  }
}

/**
 * `sqlite:./data/fleetgate.db` or `sqlite::memory:`. The embedded default: one file, no server. An operation that finds
 * the file locked by another process is retried for up to `busyTimeout` ms without blocking the event loop.
 */
export function openSqliteStore(url: string, busyTimeout = Number(kSettings.storeBusyTimeout.default)): Store {
  const db = openDatabase(url);
  // Opened: from now on never wait inside SQLite, which would block the event loop; whenUnlocked waits between tries.
  db.pragma('busy_timeout = 0');

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
    listConnections: stmt('SELECT connections.* FROM connections JOIN clients ON clients.id = connections.client_id WHERE clients.domain_id = ? ORDER BY client_id, channel_id, type'),
    clientsOfDomain: stmt('SELECT id FROM clients WHERE domain_id = ?'),
    channelsOfDomain: stmt('SELECT id FROM channels WHERE domain_id = ?'),
    membersOfDomain: stmt('SELECT user_id FROM domain_members WHERE domain_id = ?'),
    deleteDomain: stmt('DELETE FROM domains WHERE id = ?'),
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
    replaceSigningKeyJwk: stmt('UPDATE signing_keys SET jwk = ? WHERE kid = ?'),
    useToken: stmt('INSERT INTO used_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING'),
    pruneUsedTokens: stmt('DELETE FROM used_tokens WHERE expires_at < ?'),
  };

  /**
   * Runs `fn` in a transaction and turns unique-constraint violations into StoreConflictError. IMMEDIATE takes the
   * write lock at BEGIN, so a locked store fails there, before any work, and the retry starts clean.
   */
  function write<T>(fn: () => T): T {
    try {
      return db.transaction(fn).immediate();
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        const field = /UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)/.exec(e.message ?? '')?.[1] ?? 'record';
        throw new StoreConflictError(field.split(', ').map((f) => f.split('.').pop()!.replace('secret_digest', 'secret')).join(', '));
      }
      throw err;
    }
  }

  const ops: Synchronous<Store> = {
    snapshot(): Snapshot {
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
    changesSince(id) {
      const changes = q.changesSince.all(id).map((r) => toChange(r as Row));
      return { changes, oldest: (q.oldestChange.get() as { id: number }).id };
    },
    getDomain(id) {
      const r = q.getDomain.get(id) as Row | undefined;
      return r && toDomain(r);
    },
    getClient(id) {
      const r = q.getClient.get(id) as Row | undefined;
      return r && toClient(r);
    },
    getChannel(id) {
      const r = q.getChannel.get(id) as Row | undefined;
      return r && toChannel(r);
    },
    connectionsOfClient(clientId) {
      return q.connectionsOfClient.all(clientId).map((r) => toConnection(r as Row));
    },
    listDomains() {
      return q.listDomains.all().map((r) => toDomain(r as Row));
    },
    listClients(domainId) {
      return q.listClients.all(domainId).map((r) => toClient(r as Row));
    },
    listChannels(domainId) {
      return q.listChannels.all(domainId).map((r) => toChannel(r as Row));
    },
    listConnections(domainId) {
      return q.listConnections.all(domainId).map((r) => toConnection(r as Row));
    },
    insertDomain(d) {
      write(() => {
        q.insertDomain.run(d.id, d.name, d.route, d.createdAt);
        q.record.run('domain', d.id);
      });
    },
    insertClient(c) {
      write(() => {
        q.insertClient.run(c.id, c.domainId, c.name, c.secretDigest, c.externalId, c.status, c.createdAt);
        q.record.run('client', c.id);
      });
    },
    insertChannel(ch) {
      write(() => {
        q.insertChannel.run(ch.id, ch.domainId, ch.name, ch.route, ch.payloadFormat, ch.createdAt);
        q.record.run('channel', ch.id);
      });
    },
    updateClient(id, patch) {
      return write(() => {
        let changed = 0;
        if (patch.secretDigest !== undefined) changed += q.setSecret.run(patch.secretDigest, id).changes;
        if (patch.status !== undefined) changed += q.setStatus.run(patch.status, id).changes;
        if (changed > 0) q.record.run('client', id);
        return changed > 0;
      });
    },
    deleteClient(id) {
      return write(() => {
        const gone = q.deleteClient.run(id).changes > 0;
        if (gone) q.record.run('client', id);
        return gone;
      });
    },
    deleteChannel(id) {
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
    deleteDomain(id) {
      return write(() => {
        // The cascade takes the domain's clients, channels, connections and memberships: log each, so that every view
        // drops them and its listeners close what the clients had open (as deleteClient does).
        const ids = (statement: Database.Statement) => (statement.all(id) as Record<string, string>[]).map((r) => Object.values(r)[0]!);
        const [clients, channels, members] = [ids(q.clientsOfDomain), ids(q.channelsOfDomain), ids(q.membersOfDomain)];
        const gone = q.deleteDomain.run(id).changes > 0;
        if (gone) {
          q.record.run('domain', id);
          for (const c of clients) q.record.run('client', c);
          for (const c of channels) q.record.run('channel', c);
          for (const u of members) q.record.run('membership', u);
        }
        return gone;
      });
    },
    connect(connections) {
      return write(() => applyConnections(q.connect, connections));
    },
    disconnect(connections) {
      return write(() => applyConnections(q.disconnect, connections));
    },
    getUser(id) {
      const r = q.getUser.get(id) as Row | undefined;
      return r && toUser(r);
    },
    getUserByLogin(login) {
      const r = (login.includes('@') ? q.getUserByEmail.get(login) : q.getUserByUsername.get(login)) as Row | undefined;
      return r && toUser(r);
    },
    insertUser(u, identity) {
      write(() => {
        q.insertUser.run(u.id, u.email, u.username, u.name, u.passwordHash, u.role, u.status, u.createdAt, u.picture, u.locale);
        if (identity !== undefined) q.insertIdentity.run(identity.provider, identity.subject, identity.userId, identity.createdAt);
        q.record.run('user', u.id);
      });
    },
    getUserByIdentity(provider, subject) {
      const r = q.getUserByIdentity.get(provider, subject) as Row | undefined;
      return r && toUser(r);
    },
    insertIdentity(i) {
      write(() => void q.insertIdentity.run(i.provider, i.subject, i.userId, i.createdAt));
    },
    updateUser(id, patch) {
      write(() => {
        if (patch.passwordHash !== undefined) q.setUserPassword.run(patch.passwordHash, id);
        if (patch.role !== undefined) q.setUserRole.run(patch.role, id);
        if (patch.status !== undefined) q.setUserStatus.run(patch.status, id);
        q.record.run('user', id);
      });
    },
    getSession(id) {
      const r = q.getSession.get(id) as Row | undefined;
      return r && toSession(r);
    },
    listSessions(userId) {
      return q.listSessions.all(userId).map((r) => toSession(r as Row));
    },
    insertSession(x) {
      write(() => {
        q.insertSession.run(x.id, x.userId, x.refreshJti, x.createdAt, x.expiresAt, x.revokedAt);
        q.record.run('session', x.id);
      });
    },
    updateSession(id, patch) {
      write(() => {
        if (patch.refreshJti !== undefined) q.setSessionJti.run(patch.refreshJti, id);
        if (patch.revokedAt !== undefined) q.revokeSession.run(patch.revokedAt, id);
        q.record.run('session', id);
      });
    },
    memberships(userId) {
      return (q.memberships.all(userId) as { domain_id: string }[]).map((r) => r.domain_id);
    },
    addMembers(domainId, userIds) {
      return write(() => applyMembers(q.addMember, domainId, userIds));
    },
    removeMembers(domainId, userIds) {
      return write(() => applyMembers(q.removeMember, domainId, userIds));
    },
    listSigningKeys() {
      return q.listSigningKeys.all().map((r) => toSigningKey(r as Row));
    },
    insertSigningKey(k) {
      write(() => {
        q.insertSigningKey.run(k.kid, k.alg, k.jwk, k.status, k.createdAt);
        q.record.run('keys', k.kid);
      });
    },
    setSigningKeyStatus(kid, status) {
      return write(() => {
        const changed = q.setSigningKeyStatus.run(status, kid).changes > 0;
        if (changed) q.record.run('keys', kid);
        return changed;
      });
    },
    replaceSigningKeyJwk(kid, jwk) {
      write(() => q.replaceSigningKeyJwk.run(jwk, kid));
    },
    useToken(jti, expiresAt) {
      return write(() => {
        q.pruneUsedTokens.run(Math.floor(Date.now() / 1000));
        return q.useToken.run(jti, expiresAt).changes > 0;
      });
    },
    close() {
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

  return whenUnlockedAll(ops, busyTimeout);
}

/**
 * Opens (making its directory) and migrates the file. What stops that is the environment's doing (a directory or file
 * it may not write, a file that is not a database): a config error naming the setting, not a stack trace.
 */
function openDatabase(url: string): Database.Database {
  const path = url.slice('sqlite:'.length);
  let db: Database.Database | undefined;
  try {
    if (path !== ':memory:') ownerOnly(path);
    db = new Database(path);
    // Freed space is zeroed: a key sealed in place, or a deleted secret, leaves no old copy in the file.
    db.pragma('secure_delete = ON');
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    // The CLI and a running gateway share the file: wait for the other's write instead of failing.
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (err) {
    db?.close();
    const { code, message } = err as { code?: unknown; message?: string };
    // SqliteError and system errors carry a string code; anything else is a bug, with its stack.
    if (typeof code !== 'string') throw err;
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `${kSettings.store.env}: cannot open ${url}: ${message}`);
  }
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
