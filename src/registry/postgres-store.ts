import pg from 'pg';
import { kMigrations } from './migrations.ts';
import { kChangeLogKeep, toChange, toChannel, toClient, toConnection, toDomain, toMembership, toSession, toSigningKey, toUser, type Row } from './rows.ts';
import { GatewayError } from '../errors.ts';
import { StoreConflictError, type Store } from './store.ts';
import type { Change, Connection } from './types.ts';

/** The NOTIFY channel every write signals on, in the same transaction, so that views sync at once (no polling). */
const kNotifyChannel = 'fleetgate_changes';
/** Any fixed 64-bit key: the migrations of several instances starting together run once, one after the other. */
const kMigrationLock = 0x666c_6774_6d67;
const kChangeLogLock = 0x666c_6774_636c;

type Query = (sql: string, params?: unknown[]) => Promise<pg.QueryResult<Row>>;

/**
 * `postgres://user:pass@host:5432/db`: the registry shared by several gateway instances. The same schema, change log
 * and semantics as the SQLite store; each write also NOTIFYs `fleetgate_changes`, and `watch` LISTENs on its own
 * connection, so every instance's view hears of a change within milliseconds.
 */
export function openPostgresStore(url: string, busyTimeout = 2_000): Store {
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: busyTimeout });
  // An idle pooled connection that dies (server restart) must not crash the process: the pool drops it.
  pool.on('error', () => {});
  // A row locked by another writer is waited for as long as SQLite's store would wait, then FG_ERR_STORE_UNAVAILABLE.
  pool.on('connect', (client) => void client.query(`SET lock_timeout = ${Math.floor(busyTimeout)}`).catch(() => {}));
  // Opening is synchronous like SQLite's; the first query waits for the migrations (the gateway's start makes it).
  const migrated = migrate(pool);
  migrated.catch(() => {});
  const connect = async (): Promise<pg.PoolClient> => {
    await migrated;
    return pool.connect().catch((err: unknown) => Promise.reject(storeFailure(err)));
  };
  const query: Query = async (sql, params) => {
    await migrated;
    return pool.query<Row>(sql, params).catch((err: unknown) => Promise.reject(storeFailure(err)));
  };

  /** Runs `fn` in a transaction (which records its changes and notifies) and turns unique violations into StoreConflictError. */
  async function write<T>(fn: (q: Query, record: (entity: Change['entity'], id: string) => Promise<void>) => Promise<T>): Promise<T> {
    const client = await connect();
    try {
      await client.query('BEGIN');
      const q: Query = (sql, params) => client.query<Row>(sql, params);
      let recorded = false;
      const record = async (entity: Change['entity'], id: string): Promise<void> => {
        // Change ids must appear in commit order, or a view that has read id 6 never sees a 5 committed after it.
        // Writers that log a change take turns from here to their commit (registry writes are rare; reads never wait).
        if (!recorded) await q('SELECT pg_advisory_xact_lock($1)', [kChangeLogLock]);
        await q('INSERT INTO changes (entity, entity_id) VALUES ($1, $2)', [entity, id]);
        recorded = true;
      };
      const result = await fn(q, record);
      if (recorded) await q(`SELECT pg_notify('${kNotifyChannel}', '')`);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      const e = err as { code?: string; detail?: string; constraint?: string };
      // 23505 unique_violation: "Key (email)=(...) already exists."
      if (e.code === '23505') {
        const field = /Key \(([^)]+)\)/.exec(e.detail ?? '')?.[1] ?? e.constraint ?? 'record';
        throw new StoreConflictError(field.split(', ').map((f) => f.replace('secret_digest', 'secret')).join(', '));
      }
      throw storeFailure(err);
    } finally {
      client.release();
    }
  }

  const one = async <T>(sql: string, params: unknown[], to: (r: Row) => T): Promise<T | undefined> => {
    const r = (await query(sql, params)).rows[0];
    return r && to(r);
  };
  const all = async <T>(sql: string, params: unknown[], to: (r: Row) => T): Promise<T[]> => (await query(sql, params)).rows.map(to);

  async function applyConnections(q: Query, record: (e: Change['entity'], id: string) => Promise<void>, sql: string, connections: readonly Connection[]): Promise<number> {
    let changed = 0;
    const clients = new Set<string>();
    for (const c of connections) {
      if (((await q(sql, [c.clientId, c.channelId, c.type])).rowCount ?? 0) > 0) {
        changed++;
        clients.add(c.clientId);
      }
    }
    for (const id of clients) await record('connections', id);
    return changed;
  }

  async function applyMembers(q: Query, record: (e: Change['entity'], id: string) => Promise<void>, sql: string, domainId: string, userIds: readonly string[]): Promise<number> {
    let changed = 0;
    for (const userId of userIds) {
      if (((await q(sql, [domainId, userId])).rowCount ?? 0) > 0) {
        changed++;
        await record('membership', userId);
      }
    }
    return changed;
  }

  let listener: pg.Client | undefined;
  let closed = false;

  const store: Store = {
    async snapshot() {
      const client = await connect();
      try {
        // One consistent view of every table, and the change id it corresponds to.
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const rows = async (sql: string, params: unknown[] = []) => (await client.query<Row>(sql, params)).rows;
        const snapshot = {
          domains: (await rows('SELECT * FROM domains')).map(toDomain),
          clients: (await rows('SELECT * FROM clients')).map(toClient),
          channels: (await rows('SELECT * FROM channels')).map(toChannel),
          connections: (await rows('SELECT * FROM connections')).map(toConnection),
          users: (await rows('SELECT * FROM users')).map(toUser),
          sessions: (await rows('SELECT * FROM sessions WHERE revoked_at IS NULL AND expires_at > $1', [Math.floor(Date.now() / 1000)])).map(toSession),
          memberships: (await rows('SELECT * FROM domain_members')).map(toMembership),
          lastChange: Number((await rows('SELECT COALESCE(MAX(id), 0) AS id FROM changes'))[0]!.id),
        };
        await client.query('COMMIT');
        return snapshot;
      } finally {
        client.release();
      }
    },
    async changesSince(id) {
      // One round trip: this runs on every instance for every change, on the way to closing a revoked connection.
      const { rows } = await query('SELECT id, entity, entity_id, (SELECT COALESCE(MIN(id), 0) FROM changes) AS oldest FROM changes WHERE id > $1 ORDER BY id LIMIT 10000', [id]);
      return { changes: rows.map(toChange), oldest: rows.length === 0 ? 0 : Number(rows[0]!.oldest) };
    },
    getDomain: (id) => one('SELECT * FROM domains WHERE id = $1', [id], toDomain),
    getClient: (id) => one('SELECT * FROM clients WHERE id = $1', [id], toClient),
    getChannel: (id) => one('SELECT * FROM channels WHERE id = $1', [id], toChannel),
    connectionsOfClient: (clientId) => all('SELECT * FROM connections WHERE client_id = $1', [clientId], toConnection),
    listDomains: () => all('SELECT * FROM domains ORDER BY created_at, id', [], toDomain),
    listClients: (domainId) => all('SELECT * FROM clients WHERE domain_id = $1 ORDER BY created_at, id', [domainId], toClient),
    listChannels: (domainId) => all('SELECT * FROM channels WHERE domain_id = $1 ORDER BY created_at, id', [domainId], toChannel),
    listConnections: (domainId) => all('SELECT connections.* FROM connections JOIN clients ON clients.id = connections.client_id WHERE clients.domain_id = $1 ORDER BY client_id, channel_id, type', [domainId], toConnection),
    insertDomain: (d) => write(async (q, record) => {
      await q('INSERT INTO domains (id, name, route, created_at) VALUES ($1, $2, $3, $4)', [d.id, d.name, d.route, d.createdAt]);
      await record('domain', d.id);
    }),
    insertClient: (c) => write(async (q, record) => {
      await q('INSERT INTO clients (id, domain_id, name, secret_digest, external_id, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [c.id, c.domainId, c.name, c.secretDigest, c.externalId, c.status, c.createdAt]);
      await record('client', c.id);
    }),
    insertChannel: (ch) => write(async (q, record) => {
      await q('INSERT INTO channels (id, domain_id, name, route, payload_format, created_at) VALUES ($1, $2, $3, $4, $5, $6)',
        [ch.id, ch.domainId, ch.name, ch.route, ch.payloadFormat, ch.createdAt]);
      await record('channel', ch.id);
    }),
    updateClient: (id, patch) => write(async (q, record) => {
      let changed = 0;
      if (patch.secretDigest !== undefined) changed += (await q('UPDATE clients SET secret_digest = $1 WHERE id = $2', [patch.secretDigest, id])).rowCount ?? 0;
      if (patch.status !== undefined) changed += (await q('UPDATE clients SET status = $1 WHERE id = $2', [patch.status, id])).rowCount ?? 0;
      if (changed > 0) await record('client', id);
      return changed > 0;
    }),
    deleteClient: (id) => write(async (q, record) => {
      const gone = ((await q('DELETE FROM clients WHERE id = $1', [id])).rowCount ?? 0) > 0;
      if (gone) await record('client', id);
      return gone;
    }),
    deleteDomain: (id) => write(async (q, record) => {
      // The cascade takes the domain's clients, channels, connections and memberships: log each, so that every view
      // drops them and its listeners close what the clients had open (as deleteClient does).
      const ids = async (sql: string) => (await q(sql, [id])).rows.map((r) => Object.values(r)[0] as string);
      const clients = await ids('SELECT id FROM clients WHERE domain_id = $1');
      const channels = await ids('SELECT id FROM channels WHERE domain_id = $1');
      const members = await ids('SELECT user_id FROM domain_members WHERE domain_id = $1');
      const gone = ((await q('DELETE FROM domains WHERE id = $1', [id])).rowCount ?? 0) > 0;
      if (gone) {
        await record('domain', id);
        for (const c of clients) await record('client', c);
        for (const c of channels) await record('channel', c);
        for (const u of members) await record('membership', u);
      }
      return gone;
    }),
    deleteChannel: (id) => write(async (q, record) => {
      // The cascade drops the channel's connections: tell every view which clients lost one.
      const clients = (await q('SELECT DISTINCT client_id FROM connections WHERE channel_id = $1', [id])).rows as Row[];
      const gone = ((await q('DELETE FROM channels WHERE id = $1', [id])).rowCount ?? 0) > 0;
      if (gone) {
        await record('channel', id);
        for (const c of clients) await record('connections', c.client_id as string);
      }
      return gone;
    }),
    connect: (connections) => write((q, record) =>
      applyConnections(q, record, 'INSERT INTO connections (client_id, channel_id, type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', connections)),
    disconnect: (connections) => write((q, record) =>
      applyConnections(q, record, 'DELETE FROM connections WHERE client_id = $1 AND channel_id = $2 AND type = $3', connections)),
    getUser: (id) => one('SELECT * FROM users WHERE id = $1', [id], toUser),
    getUserByLogin: (login) => one(login.includes('@') ? 'SELECT * FROM users WHERE email = $1' : 'SELECT * FROM users WHERE username = $1', [login], toUser),
    insertUser: (u, identity) => write(async (q, record) => {
      await q('INSERT INTO users (id, email, username, name, password_hash, role, status, created_at, picture, locale) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)',
        [u.id, u.email, u.username, u.name, u.passwordHash, u.role, u.status, u.createdAt, u.picture, u.locale]);
      if (identity !== undefined) {
        await q('INSERT INTO user_identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)', [identity.provider, identity.subject, identity.userId, identity.createdAt]);
      }
      await record('user', u.id);
    }),
    getUserByIdentity: (provider, subject) =>
      one('SELECT users.* FROM users JOIN user_identities ON users.id = user_identities.user_id WHERE provider = $1 AND subject = $2', [provider, subject], toUser),
    insertIdentity: (i) => write(async (q) => {
      await q('INSERT INTO user_identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)', [i.provider, i.subject, i.userId, i.createdAt]);
    }),
    updateUser: (id, patch) => write(async (q, record) => {
      if (patch.passwordHash !== undefined) await q('UPDATE users SET password_hash = $1 WHERE id = $2', [patch.passwordHash, id]);
      if (patch.role !== undefined) await q('UPDATE users SET role = $1 WHERE id = $2', [patch.role, id]);
      if (patch.status !== undefined) await q('UPDATE users SET status = $1 WHERE id = $2', [patch.status, id]);
      await record('user', id);
    }),
    getSession: (id) => one('SELECT * FROM sessions WHERE id = $1', [id], toSession),
    listSessions: (userId) => all('SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at, id', [userId], toSession),
    insertSession: (x) => write(async (q, record) => {
      await q('INSERT INTO sessions (id, user_id, refresh_jti, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)',
        [x.id, x.userId, x.refreshJti, x.createdAt, x.expiresAt, x.revokedAt]);
      await record('session', x.id);
    }),
    updateSession: (id, patch) => write(async (q, record) => {
      if (patch.refreshJti !== undefined) await q('UPDATE sessions SET refresh_jti = $1 WHERE id = $2', [patch.refreshJti, id]);
      if (patch.revokedAt !== undefined) await q('UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [patch.revokedAt, id]);
      await record('session', id);
    }),
    memberships: async (userId) => (await query('SELECT domain_id FROM domain_members WHERE user_id = $1', [userId])).rows.map((r: Row) => r.domain_id as string),
    addMembers: (domainId, userIds) => write((q, record) =>
      applyMembers(q, record, 'INSERT INTO domain_members (domain_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', domainId, userIds)),
    removeMembers: (domainId, userIds) => write((q, record) =>
      applyMembers(q, record, 'DELETE FROM domain_members WHERE domain_id = $1 AND user_id = $2', domainId, userIds)),
    listSigningKeys: () => all('SELECT * FROM signing_keys ORDER BY created_at, kid', [], toSigningKey),
    insertSigningKey: (k) => write(async (q, record) => {
      await q('INSERT INTO signing_keys (kid, alg, jwk, status, created_at) VALUES ($1, $2, $3, $4, $5)', [k.kid, k.alg, k.jwk, k.status, k.createdAt]);
      await record('keys', k.kid);
    }),
    setSigningKeyStatus: (kid, status) => write(async (q, record) => {
      const changed = ((await q('UPDATE signing_keys SET status = $1 WHERE kid = $2', [status, kid])).rowCount ?? 0) > 0;
      if (changed) await record('keys', kid);
      return changed;
    }),
    replaceSigningKeyJwk: (kid, jwk) => write(async (q) => {
      await q('UPDATE signing_keys SET jwk = $1 WHERE kid = $2', [jwk, kid]);
    }),
    useToken: (jti, expiresAt) => write(async (q) => {
      await q('DELETE FROM used_tokens WHERE expires_at < $1', [Math.floor(Date.now() / 1000)]);
      // Whichever instance sees the token first wins; the primary key settles a race between two.
      return ((await q('INSERT INTO used_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [jti, expiresAt])).rowCount ?? 0) > 0;
    }),
    async watch(onChange, onState) {
      // A dedicated connection: LISTEN lives on a session. Lost, it is re-made, and the view syncs to catch up.
      const listen = async (): Promise<void> => {
        if (closed) return;
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
        client.on('notification', () => onChange());
        client.on('error', () => {});
        client.on('end', () => {
          if (listener === client) listener = undefined;
          if (closed) return;
          onState(false);
          setTimeout(() => void listen().catch(retry), 500).unref();
        });
        await client.connect();
        await client.query(`LISTEN ${kNotifyChannel}`);
        listener = client;
        onState(true);
        onChange();
      };
      const retry = (): void => {
        onState(false);
        if (!closed) setTimeout(() => void listen().catch(retry), 500).unref();
      };
      await listen();
    },
    async close() {
      closed = true;
      await listener?.end().catch(() => {});
      await pool.end();
    },
  };
  return store;
}

/**
 * What the gateway answers for a PostgreSQL failure: a server that cannot be reached, is shutting down or is in
 * recovery, or a lock not granted in time, is FG_ERR_STORE_UNAVAILABLE (503, retry); a full disk FG_ERR_STORE_FULL (507).
 * Anything else (a bug, a bad query) stays what it is.
 */
function storeFailure(err: unknown): unknown {
  const { code, message } = err as { code?: string; message?: string };
  if (code === '53100') return new GatewayError('FG_ERR_STORE_FULL', 'registry store is full: no space left on its disk');
  const unreachable = code !== undefined && (/^(08|57P|53)/.test(code) || code === '55P03' || /^E(CONNREFUSED|CONNRESET|TIMEDOUT|PIPE|NOTFOUND|HOSTUNREACH|AI_AGAIN)$/.test(code));
  if (unreachable || /Connection terminated|timeout exceeded when trying to connect|Connection ended unexpectedly/.test(message ?? '')) {
    return new GatewayError('FG_ERR_STORE_UNAVAILABLE', 'registry store (PostgreSQL) unreachable: retry shortly');
  }
  return err;
}

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    // Several instances starting together: the first takes the lock and migrates, the others wait and find it done.
    await client.query('SELECT pg_advisory_lock($1)', [kMigrationLock]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    for (const m of kMigrations) {
      if (applied.has(m.version)) continue;
      await client.query('BEGIN');
      await client.query(m.sql('postgres'));
      await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, new Date().toISOString()]);
      await client.query('COMMIT');
    }
    // The change log only has to cover the gap a view can fall behind by; a view behind the oldest row reloads all.
    await client.query('DELETE FROM changes WHERE id < (SELECT MAX(id) FROM changes) - $1', [kChangeLogKeep]);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [kMigrationLock]).catch(() => {});
    client.release();
  }
}
