/**
 * Schema versions, applied in order and recorded in schema_migrations. The SQL sticks to what SQLite and PostgreSQL
 * both accept, except the change log's auto-increment key, which each dialect spells its own way.
 */
export interface Migration {
  readonly version: number;
  readonly sql: (dialect: 'sqlite' | 'postgres') => string;
}

export const kMigrations: readonly Migration[] = [
  {
    version: 1,
    sql: (dialect) => `
      CREATE TABLE domains (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        route TEXT UNIQUE,
        created_at TEXT NOT NULL
      );
      CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        domain_id TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_digest TEXT NOT NULL UNIQUE,
        external_id TEXT UNIQUE,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        domain_id TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        route TEXT,
        payload_format TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (domain_id, route)
      );
      CREATE TABLE connections (
        client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
        channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        PRIMARY KEY (client_id, channel_id, type)
      );
      CREATE INDEX connections_by_channel ON connections (channel_id);
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        username TEXT UNIQUE,
        name TEXT,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE domain_members (
        domain_id TEXT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (domain_id, user_id)
      );
      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        refresh_jti TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at TEXT
      );
      CREATE INDEX sessions_by_user ON sessions (user_id);
      CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        jwk TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE used_tokens (
        jti TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
      );
      CREATE TABLE changes (
        id ${dialect === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGSERIAL PRIMARY KEY'},
        entity TEXT NOT NULL,
        entity_id TEXT NOT NULL
      );`,
  },
  {
    // Sign-in with Google / OIDC: a user's accounts at identity providers, and the profile they bring.
    version: 2,
    sql: () => `
      CREATE TABLE user_identities (
        provider TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (provider, subject)
      );
      CREATE INDEX user_identities_by_user ON user_identities (user_id);
      ALTER TABLE users ADD COLUMN picture TEXT;
      ALTER TABLE users ADD COLUMN locale TEXT;`,
  },
];
