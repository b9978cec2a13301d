import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { kMigrations } from './migrations.ts';
import { StoreConflictError, type Store } from './store.ts';
import type { Change, Channel, Client, Connection, Domain, Snapshot, User } from './types.ts';

type Row = Record<string, unknown>;

const kChangeLogKeep = 100_000;

const toDomain = (r: Row): Domain => ({
  id: r.id as string, name: r.name as string, route: r.route as string | null, createdAt: r.created_at as string,
});
const toClient = (r: Row): Client => ({
  id: r.id as string, domainId: r.domain_id as string, name: r.name as string, secretDigest: r.secret_digest as string,
  externalId: r.external_id as string | null, status: r.status as Client['status'], createdAt: r.created_at as string,
});
const toChannel = (r: Row): Channel => ({
  id: r.id as string, domainId: r.domain_id as string, name: r.name as string, route: r.route as string | null,
  payloadFormat: r.payload_format as Channel['payloadFormat'], createdAt: r.created_at as string,
});
const toConnection = (r: Row): Connection => ({
  clientId: r.client_id as string, channelId: r.channel_id as string, type: r.type as Connection['type'],
});
const toUser = (r: Row): User => ({
  id: r.id as string, email: r.email as string, name: r.name as string | null, passwordHash: r.password_hash as string,
  role: r.role as User['role'], createdAt: r.created_at as string,
});
const toChange = (r: Row): Change => ({ id: r.id as number, entity: r.entity as Change['entity'], entityId: r.entity_id as string });

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
    getUserByEmail: stmt('SELECT * FROM users WHERE email = ?'),
    insertUser: stmt('INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
    setUserPassword: stmt('UPDATE users SET password_hash = ? WHERE id = ?'),
    setUserRole: stmt('UPDATE users SET role = ? WHERE id = ?'),
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
    async getUserByEmail(email) {
      const r = q.getUserByEmail.get(email) as Row | undefined;
      return r && toUser(r);
    },
    async insertUser(u) {
      write(() => q.insertUser.run(u.id, u.email, u.name, u.passwordHash, u.role, u.createdAt));
    },
    async updateUser(id, patch) {
      write(() => {
        if (patch.passwordHash !== undefined) q.setUserPassword.run(patch.passwordHash, id);
        if (patch.role !== undefined) q.setUserRole.run(patch.role, id);
      });
    },
    async close() {
      db.close();
    },
  };

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
