export const kPayloadFormats = ['senml+json', 'senml+cbor', 'json', 'raw'] as const;
export type PayloadFormat = (typeof kPayloadFormats)[number];

export const kConnectionTypes = ['publish', 'subscribe'] as const;
export type ConnectionType = (typeof kConnectionTypes)[number];

/** Permission bits of one client on one channel, as the view keeps them. */
export const kPermission = { publish: 1, subscribe: 2 } as const satisfies Record<ConnectionType, number>;

export type ClientStatus = 'enabled' | 'disabled';

export interface Domain {
  readonly id: string;
  readonly name: string;
  readonly route: string | null;
  readonly createdAt: string;
}

export interface Client {
  readonly id: string;
  readonly domainId: string;
  readonly name: string;
  /** sha256 of the secret, base64url: the secret itself is never stored (see auth/secret.ts). */
  readonly secretDigest: string;
  readonly externalId: string | null;
  readonly status: ClientStatus;
  readonly createdAt: string;
}

export interface Channel {
  readonly id: string;
  readonly domainId: string;
  readonly name: string;
  readonly route: string | null;
  readonly payloadFormat: PayloadFormat;
  readonly createdAt: string;
}

export interface Connection {
  readonly clientId: string;
  readonly channelId: string;
  readonly type: ConnectionType;
}

export type UserRole = 'admin' | 'user';

export interface User {
  readonly id: string;
  readonly email: string;
  readonly username: string | null;
  readonly name: string | null;
  /** empty for a user who signs in only through an identity provider */
  readonly passwordHash: string;
  readonly role: UserRole;
  readonly status: ClientStatus;
  readonly createdAt: string;
  /** profile from an identity provider */
  readonly picture: string | null;
  readonly locale: string | null;
}

/** A user's account at an identity provider (sign-in with Google / OIDC): the provider's subject names the user. */
export interface Identity {
  readonly provider: string;
  readonly subject: string;
  readonly userId: string;
  readonly createdAt: string;
}

/** A sign-in: one refresh-token chain. Access tokens carry its id (`sid`), so revoking it revokes them too. */
export interface Session {
  readonly id: string;
  readonly userId: string;
  /** jti of the one refresh token that may still be used; an older one is a replay and ends the session */
  readonly refreshJti: string;
  readonly createdAt: string;
  /** Unix seconds */
  readonly expiresAt: number;
  readonly revokedAt: string | null;
}

export interface Membership {
  readonly domainId: string;
  readonly userId: string;
}

export type SigningKeyStatus = 'active' | 'retiring' | 'retired';

export interface SigningKeyRow {
  readonly kid: string;
  readonly alg: string;
  /** private JWK, JSON, sealed (auth/key-encryption.ts) */
  readonly jwk: string;
  readonly status: SigningKeyStatus;
  readonly createdAt: string;
}

/** One row of the change log: "entity X changed, reload it". Every write appends these in its transaction. */
export interface Change {
  readonly id: number;
  readonly entity: 'domain' | 'client' | 'channel' | 'connections' | 'user' | 'session' | 'membership' | 'keys';
  readonly entityId: string;
}

export interface Snapshot {
  readonly domains: Domain[];
  readonly clients: Client[];
  readonly channels: Channel[];
  readonly connections: Connection[];
  readonly users: User[];
  readonly sessions: Session[];
  readonly memberships: Membership[];
  /** id of the newest change the snapshot includes */
  readonly lastChange: number;
}
