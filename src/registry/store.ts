import type { Change, Channel, Client, ClientStatus, Connection, Domain, Identity, Session, SigningKeyRow, SigningKeyStatus, Snapshot, User } from './types.ts';

/**
 * Persistence of the registry. Async so that a networked store (PostgreSQL) fits the same interface. Every mutation
 * records what it changed in the change log, in the same transaction, so that every process sharing the store
 * (gateway instances, the CLI) can bring its in-memory view up to date (registry/view.ts).
 *
 * Whatever the backend, an operation never blocks the event loop while it waits for the store, and fails in the same
 * terms: GatewayError FG_ERR_STORE_UNAVAILABLE (503) when the store stays locked or unreachable past its busy timeout,
 * FG_ERR_STORE_FULL (507) when it has no space left; StoreConflictError for a unique-constraint clash.
 */
export interface Store {
  snapshot(): Promise<Snapshot>;
  changesSince(id: number): Promise<{ changes: Change[]; oldest: number }>;

  getDomain(id: string): Promise<Domain | undefined>;
  getClient(id: string): Promise<Client | undefined>;
  getChannel(id: string): Promise<Channel | undefined>;
  connectionsOfClient(clientId: string): Promise<Connection[]>;
  listDomains(): Promise<Domain[]>;
  listClients(domainId: string): Promise<Client[]>;
  listChannels(domainId: string): Promise<Channel[]>;
  /** every connection of the domain's clients, by client then channel */
  listConnections(domainId: string): Promise<Connection[]>;

  insertDomain(domain: Domain): Promise<void>;
  insertClient(client: Client): Promise<void>;
  insertChannel(channel: Channel): Promise<void>;
  updateClient(id: string, patch: { secretDigest?: string; status?: ClientStatus }): Promise<boolean>;
  deleteClient(id: string): Promise<boolean>;
  deleteChannel(id: string): Promise<boolean>;
  /** The domain with its clients, channels, their connections and its memberships. */
  deleteDomain(id: string): Promise<boolean>;
  /** Adds (or removes) connections; returns how many rows changed. */
  connect(connections: readonly Connection[]): Promise<number>;
  disconnect(connections: readonly Connection[]): Promise<number>;

  getUser(id: string): Promise<User | undefined>;
  /** by email, or by username when `login` holds no "@" */
  getUserByLogin(login: string): Promise<User | undefined>;
  /** with the identity it signed in with, in one transaction */
  insertUser(user: User, identity?: Identity): Promise<void>;
  /** the user an identity provider's subject belongs to */
  getUserByIdentity(provider: string, subject: string): Promise<User | undefined>;
  insertIdentity(identity: Identity): Promise<void>;
  updateUser(id: string, patch: { passwordHash?: string; role?: User['role']; status?: User['status'] }): Promise<void>;

  getSession(id: string): Promise<Session | undefined>;
  listSessions(userId: string): Promise<Session[]>;
  insertSession(session: Session): Promise<void>;
  updateSession(id: string, patch: { refreshJti?: string; revokedAt?: string }): Promise<void>;

  memberships(userId: string): Promise<string[]>;
  addMembers(domainId: string, userIds: readonly string[]): Promise<number>;
  removeMembers(domainId: string, userIds: readonly string[]): Promise<number>;

  listSigningKeys(): Promise<SigningKeyRow[]>;
  insertSigningKey(row: SigningKeyRow): Promise<void>;
  setSigningKeyStatus(kid: string, status: SigningKeyStatus): Promise<boolean>;
  /** The same key stored another way (sealed): no change is recorded, the key material is unchanged. */
  replaceSigningKeyJwk(kid: string, jwk: string): Promise<void>;

  /** Records a single-use token; false when it was used before. */
  useToken(jti: string, expiresAt: number): Promise<boolean>;

  /**
   * For a store shared by several instances that can push its changes (PostgreSQL LISTEN/NOTIFY): calls `onChange`
   * when another process may have written, and `onState` when the push channel is lost or back. Without it, the view
   * polls the change log.
   */
  watch?(onChange: () => void, onState: (up: boolean) => void): Promise<void>;

  close(): Promise<void>;
}

export class StoreConflictError extends Error {
  readonly field: string;

  constructor(field: string) {
    super(`${field} already exists`);
    this.field = field;
  }
}
