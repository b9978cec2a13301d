import { deserialize, serialize } from 'node:v8';
import Database from 'better-sqlite3';
import { ownerOnly } from '../registry/sqlite-store.ts';
import { MqttState, type Journal, type StateOptions, type Table } from './state.ts';

/** A row waiting for the end of the turn: its value (undefined: deleted), and whether the file has it yet. */
interface Pending {
  readonly table: Table;
  readonly key: string;
  value: unknown;
  /** written in this turn for the first time: deleted in the same turn, it never reaches the file */
  fresh: boolean;
}

/**
 * Writes the state's changes to SQLite in one transaction per turn of the event loop: a QoS 1 message queued, sent
 * and acknowledged within a turn costs nothing, and a flood costs one commit per turn, not one per packet.
 * `committed()` resolves once the turn's transaction is in the file (WAL, synchronous=NORMAL: a crash of the process
 * loses nothing committed; a power cut may lose the last commits).
 */
class SqliteJournal implements Journal {
  private readonly db: Database.Database;
  private readonly commit: (rows: Iterable<Pending>) => void;
  private pending = new Map<string, Pending>();
  /** settled when the pending rows are committed (made on demand: most writes are not waited for) */
  private batch: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | undefined;
  private scheduled = false;
  private readonly onError: (err: unknown) => void;

  constructor(db: Database.Database, onError: (err: unknown) => void) {
    this.db = db;
    this.onError = onError;
    const upsert = db.prepare('INSERT INTO mqtt_state (kind, key, seq, value) VALUES (?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value');
    const remove = db.prepare('DELETE FROM mqtt_state WHERE kind = ? AND key = ?');
    this.commit = db.transaction((rows: Iterable<Pending>) => {
      for (const { table, key, value } of rows) {
        if (value === undefined) remove.run(table, key);
        else upsert.run(table, key, table === 'outgoing' ? Number(key) : 0, value as Buffer);
      }
    });
  }

  put(table: Table, key: string, value: unknown, fresh = false): void {
    const id = `${table}\0${key}`;
    const known = this.pending.get(id);
    if (known === undefined) this.pending.set(id, { table, key, value, fresh });
    else known.value = value;
    this.later();
  }

  del(table: Table, key: string): void {
    const id = `${table}\0${key}`;
    const known = this.pending.get(id);
    if (known?.fresh === true) this.pending.delete(id);
    else if (known !== undefined) known.value = undefined;
    else this.pending.set(id, { table, key, value: undefined, fresh: false });
    this.later();
  }

  committed(): Promise<void> {
    if (!this.scheduled) return Promise.resolve();
    if (this.batch === undefined) {
      let settle!: { resolve: () => void; reject: (err: unknown) => void };
      const promise = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
      this.batch = { promise, ...settle };
    }
    return this.batch.promise;
  }

  private later(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Commits what this turn changed, then settles every write that waited for it. */
  private flush(): void {
    this.scheduled = false;
    const rows = this.pending;
    const batch = this.batch;
    this.pending = new Map();
    this.batch = undefined;
    try {
      // Encoded first, one by one: a row that cannot be (a bug) is left out and reported, the others are written.
      for (const [id, row] of rows) {
        try {
          if (row.value !== undefined) row.value = serialize(row.value);
        } catch (err) {
          rows.delete(id);
          this.onError(err);
        }
      }
      if (rows.size > 0) this.commit(rows.values());
    } catch (err) {
      this.onError(err);
      batch?.reject(err);
      return;
    }
    batch?.resolve();
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}

/**
 * MQTT state in a SQLite file (`FLEETGATE_MQTT_PERSISTENCE=sqlite`): retained messages, persistent sessions with their
 * subscriptions, queued and in-flight QoS 1/2 messages, wills. Loaded into memory at start; every change is written
 * back within the turn (SqliteJournal). The file is private to its owner (0600, directory 0700), as the registry is.
 */
export function openSqlitePersistence(path: string, options: Omit<StateOptions, 'journal'>, onError: (err: unknown) => void): MqttState {
  if (path !== ':memory:') ownerOnly(path);
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE IF NOT EXISTS mqtt_state (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID');
    const state = new MqttState({ ...options, journal: new SqliteJournal(db, onError) });
    const rows = db.prepare('SELECT kind, key, value FROM mqtt_state ORDER BY kind, seq').iterate() as Iterable<{ kind: Table; key: string; value: Buffer }>;
    for (const { kind, key, value } of rows) state.load(kind, key, deserialize(value));
    return state;
  } catch (err) {
    db.close();
    throw err;
  }
}
