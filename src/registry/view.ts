import type { Store } from './store.ts';
import { kPermission, type Change, type Channel, type Client, type Connection, type Domain, type Session, type Snapshot, type User } from './types.ts';

export interface ViewListener {
  /** A client was created, changed (secret, status), deleted, or its connections changed. */
  clientChanged?(clientId: string): void;
  /** A channel was created, changed or deleted. */
  channelChanged?(channelId: string): void;
  /** A user was created, changed (status, role, password) or lost or gained a domain. */
  userChanged?(userId: string): void;
  /** A session was created, refreshed or revoked. */
  sessionChanged?(sessionId: string): void;
  /** Signing keys were added, rotated or retired. */
  keysChanged?(kid: string): void;
}

const kNoPermissions: ReadonlyMap<string, number> = new Map();

/** with a store that pushes its changes, a poll only catches what a lost notification missed */
const kPushedPollInterval = 10_000;

/** how often ended sessions are dropped from memory */
const kPruneInterval = 60_000;

/**
 * The registry as the hot path sees it: every lookup is a synchronous Map access, no query per message. Kept current
 * from the store's change log: right after this process's own writes (`sync()`), and by polling for writes made by
 * other processes sharing the store (the CLI, other instances).
 */
export class RegistryView {
  private readonly domainsById = new Map<string, Domain>();
  private readonly domainsByRoute = new Map<string, Domain>();
  private readonly clientsById = new Map<string, Client>();
  private readonly clientsByDigest = new Map<string, Client>();
  private readonly channelsById = new Map<string, Channel>();
  private readonly channelsByRoute = new Map<string, Channel>();
  private readonly permissionsByClient = new Map<string, Map<string, number>>();
  private readonly clientsByExternalId = new Map<string, Client>();
  private readonly usersById = new Map<string, User>();
  private readonly sessionsById = new Map<string, Session>();
  private readonly domainsByUser = new Map<string, Set<string>>();
  private readonly listeners: ViewListener[] = [];
  private lastChange = 0;
  /** false while a store that pushes its changes cannot (its listening connection is down) */
  private pushed = true;
  private syncing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private pruner: NodeJS.Timeout | undefined;

  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  async load(): Promise<void> {
    this.apply(await this.store.snapshot());
  }

  listen(listener: ViewListener): void {
    this.listeners.push(listener);
  }

  /** Applies every change logged since the last sync; calls are serialised so changes apply in order. */
  sync(): Promise<void> {
    const run = this.syncing.then(() => this.pull());
    // The chain must survive a failed pull (a locked or briefly unreadable store): the next sync tries again.
    this.syncing = run.catch(() => undefined);
    return run;
  }

  /**
   * Keeps up with other processes' writes: pushed by the store when it can (PostgreSQL LISTEN/NOTIFY, with a poll
   * every `kPushedPollInterval` as a safety net), else by polling the change log every `intervalMs`. Polls run one at
   * a time, each an interval after the last ended: a slow store delays polls rather than piling them up.
   */
  async startPolling(intervalMs: number, onError: (err: unknown) => void): Promise<void> {
    if (this.store.watch !== undefined) {
      await this.store.watch(() => void this.sync().catch(onError), (up) => {
        this.pushed = up;
      });
    }
    const interval = this.store.watch === undefined ? intervalMs : kPushedPollInterval;
    this.polling = true;
    const next = () => {
      if (!this.polling) return;
      this.timer = setTimeout(() => void this.sync().catch(onError).finally(next), interval);
      this.timer.unref();
    };
    next();
    this.pruner = setInterval(() => this.pruneSessions(), kPruneInterval);
    this.pruner.unref();
  }

  /** Whether this view hears of other processes' writes as they happen (readiness). */
  get current(): boolean {
    return this.pushed;
  }

  stopPolling(): void {
    this.polling = false;
    clearTimeout(this.timer);
    clearInterval(this.pruner);
  }

  /**
   * Forgets sessions that ended (revoked or expired): they are never live again, and a long-running gateway would
   * otherwise keep one entry per sign-in. Returns how many went.
   */
  pruneSessions(now = Date.now()): number {
    let pruned = 0;
    for (const [id, s] of this.sessionsById) {
      if (s.revokedAt !== null || s.expiresAt * 1000 <= now) pruned += Number(this.sessionsById.delete(id));
    }
    return pruned;
  }

  domain(ref: string): Domain | undefined {
    return this.domainsById.get(ref) ?? this.domainsByRoute.get(ref);
  }

  /** A channel of `domainId` by id or by route. */
  channel(domainId: string, ref: string): Channel | undefined {
    const byId = this.channelsById.get(ref);
    if (byId !== undefined) return byId.domainId === domainId ? byId : undefined;
    return this.channelsByRoute.get(domainId + '/' + ref);
  }

  /** Legacy Mainflux paths name a channel by its (globally unique) id alone. */
  channelById(id: string): Channel | undefined {
    return this.channelsById.get(id);
  }

  client(id: string): Client | undefined {
    return this.clientsById.get(id);
  }

  clientBySecretDigest(digest: string): Client | undefined {
    return this.clientsByDigest.get(digest);
  }

  /** The client provisioned for an identity provider's subject (DESIGN.md §4.2). */
  clientByExternalId(externalId: string): Client | undefined {
    return this.clientsByExternalId.get(externalId);
  }

  user(id: string): User | undefined {
    return this.usersById.get(id);
  }

  /** A live session: not revoked, not expired. */
  session(id: string): Session | undefined {
    const s = this.sessionsById.get(id);
    return s !== undefined && s.revokedAt === null && s.expiresAt * 1000 > Date.now() ? s : undefined;
  }

  /** Read live, never copied into a principal: a demoted admin loses its reach on open connections too. */
  isAdmin(userId: string): boolean {
    return this.usersById.get(userId)?.role === 'admin';
  }

  isMember(userId: string, domainId: string): boolean {
    return this.domainsByUser.get(userId)?.has(domainId) ?? false;
  }

  /** Permission bits (kPermission) of a client on a channel. */
  permissions(clientId: string, channelId: string): number {
    return (this.permissionsByClient.get(clientId) ?? kNoPermissions).get(channelId) ?? 0;
  }

  private async pull(): Promise<void> {
    const { changes, oldest } = await this.store.changesSince(this.lastChange);
    if (changes.length === 0) return;
    if (oldest > this.lastChange + 1) {
      // Fell behind the pruned log: rebuild from scratch, then tell listeners about everything.
      const before = { clients: [...this.clientsById.keys()], users: [...this.usersById.keys()], sessions: [...this.sessionsById.keys()] };
      this.apply(await this.store.snapshot());
      for (const id of new Set([...before.clients, ...this.clientsById.keys()])) this.emit('clientChanged', id);
      for (const id of new Set([...before.users, ...this.usersById.keys()])) this.emit('userChanged', id);
      for (const id of new Set([...before.sessions, ...this.sessionsById.keys()])) this.emit('sessionChanged', id);
      this.emit('keysChanged', '*');
      return;
    }
    const seen = new Set<string>();
    for (const change of changes) {
      this.lastChange = change.id;
      const key = change.entity + ':' + change.entityId;
      if (seen.has(key)) continue;
      seen.add(key);
      await this.reload(change);
    }
    if (changes.length === 10_000) await this.pull();
  }

  private async reload(change: Change): Promise<void> {
    const id = change.entityId;
    switch (change.entity) {
      case 'domain': {
        this.dropDomain(id);
        const domain = await this.store.getDomain(id);
        if (domain) this.putDomain(domain);
        return;
      }
      case 'channel': {
        this.dropChannel(id);
        const channel = await this.store.getChannel(id);
        if (channel) this.putChannel(channel);
        this.emit('channelChanged', id);
        return;
      }
      case 'client': {
        this.dropClient(id);
        const client = await this.store.getClient(id);
        if (client) {
          this.putClient(client);
          this.putConnections(id, await this.store.connectionsOfClient(id));
        }
        this.emit('clientChanged', id);
        return;
      }
      case 'connections': {
        this.permissionsByClient.delete(id);
        if (this.clientsById.has(id)) this.putConnections(id, await this.store.connectionsOfClient(id));
        this.emit('clientChanged', id);
        return;
      }
      case 'user':
        replace(this.usersById, id, await this.store.getUser(id));
        this.emit('userChanged', id);
        return;
      case 'membership': {
        this.domainsByUser.set(id, new Set(await this.store.memberships(id)));
        this.emit('userChanged', id);
        return;
      }
      case 'session':
        replace(this.sessionsById, id, await this.store.getSession(id));
        this.emit('sessionChanged', id);
        return;
      case 'keys':
        this.emit('keysChanged', id);
        return;
    }
  }

  private apply(snapshot: Snapshot): void {
    for (const map of [
      this.domainsById, this.domainsByRoute, this.clientsById, this.clientsByDigest, this.clientsByExternalId, this.channelsById,
      this.channelsByRoute, this.permissionsByClient, this.usersById, this.sessionsById, this.domainsByUser,
    ]) {
      map.clear();
    }
    for (const u of snapshot.users) this.usersById.set(u.id, u);
    for (const s of snapshot.sessions) this.sessionsById.set(s.id, s);
    for (const m of snapshot.memberships) {
      let set = this.domainsByUser.get(m.userId);
      if (set === undefined) this.domainsByUser.set(m.userId, (set = new Set()));
      set.add(m.domainId);
    }
    for (const d of snapshot.domains) this.putDomain(d);
    for (const c of snapshot.clients) this.putClient(c);
    for (const c of snapshot.channels) this.putChannel(c);
    for (const c of snapshot.connections) this.addPermission(c);
    this.lastChange = snapshot.lastChange;
  }

  private putDomain(d: Domain): void {
    this.domainsById.set(d.id, d);
    if (d.route !== null) this.domainsByRoute.set(d.route, d);
  }

  private dropDomain(id: string): void {
    const d = this.domainsById.get(id);
    if (d === undefined) return;
    this.domainsById.delete(id);
    if (d.route !== null) this.domainsByRoute.delete(d.route);
  }

  private putClient(c: Client): void {
    this.clientsById.set(c.id, c);
    this.clientsByDigest.set(c.secretDigest, c);
    if (c.externalId !== null) this.clientsByExternalId.set(c.externalId, c);
  }

  private dropClient(id: string): void {
    const c = this.clientsById.get(id);
    if (c === undefined) return;
    this.clientsById.delete(id);
    this.clientsByDigest.delete(c.secretDigest);
    if (c.externalId !== null) this.clientsByExternalId.delete(c.externalId);
    this.permissionsByClient.delete(id);
  }

  private putChannel(c: Channel): void {
    this.channelsById.set(c.id, c);
    if (c.route !== null) this.channelsByRoute.set(c.domainId + '/' + c.route, c);
  }

  private dropChannel(id: string): void {
    const c = this.channelsById.get(id);
    if (c === undefined) return;
    this.channelsById.delete(id);
    if (c.route !== null) this.channelsByRoute.delete(c.domainId + '/' + c.route);
  }

  private putConnections(clientId: string, connections: Connection[]): void {
    this.permissionsByClient.delete(clientId);
    for (const c of connections) this.addPermission(c);
  }

  private addPermission(c: Connection): void {
    let perms = this.permissionsByClient.get(c.clientId);
    if (perms === undefined) this.permissionsByClient.set(c.clientId, (perms = new Map()));
    perms.set(c.channelId, (perms.get(c.channelId) ?? 0) | kPermission[c.type]);
  }

  private emit(event: keyof ViewListener, id: string): void {
    for (const l of this.listeners) l[event]?.(id);
  }
}

/** Puts the fresh copy of an entity in its map, or drops it when the store no longer has it. */
function replace<T>(map: Map<string, T>, id: string, fresh: T | undefined): void {
  if (fresh === undefined) map.delete(id);
  else map.set(id, fresh);
}
