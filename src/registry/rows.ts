import type { Change, Channel, Client, Connection, Domain, Membership, Session, SigningKeyRow, User } from './types.ts';

/** Rows of either store (SQLite, PostgreSQL: same column names) as registry records. */
export type Row = Record<string, unknown>;

/** change-log rows kept: the gap a view may fall behind by before it reloads everything */
export const kChangeLogKeep = 100_000;

export const toDomain = (r: Row): Domain => ({
  id: r.id as string, name: r.name as string, route: r.route as string | null, createdAt: r.created_at as string,
});
export const toClient = (r: Row): Client => ({
  id: r.id as string, domainId: r.domain_id as string, name: r.name as string, secretDigest: r.secret_digest as string,
  externalId: r.external_id as string | null, status: r.status as Client['status'], createdAt: r.created_at as string,
});
export const toChannel = (r: Row): Channel => ({
  id: r.id as string, domainId: r.domain_id as string, name: r.name as string, route: r.route as string | null,
  payloadFormat: r.payload_format as Channel['payloadFormat'], createdAt: r.created_at as string,
});
export const toConnection = (r: Row): Connection => ({
  clientId: r.client_id as string, channelId: r.channel_id as string, type: r.type as Connection['type'],
});
export const toUser = (r: Row): User => ({
  id: r.id as string, email: r.email as string, username: r.username as string | null, name: r.name as string | null,
  passwordHash: r.password_hash as string, role: r.role as User['role'], status: r.status as User['status'], createdAt: r.created_at as string,
  picture: r.picture as string | null, locale: r.locale as string | null,
});
export const toSession = (r: Row): Session => ({
  id: r.id as string, userId: r.user_id as string, refreshJti: r.refresh_jti as string, createdAt: r.created_at as string,
  expiresAt: Number(r.expires_at), revokedAt: r.revoked_at as string | null,
});
export const toMembership = (r: Row): Membership => ({ domainId: r.domain_id as string, userId: r.user_id as string });
export const toSigningKey = (r: Row): SigningKeyRow => ({
  kid: r.kid as string, alg: r.alg as string, jwk: r.jwk as string, status: r.status as SigningKeyRow['status'], createdAt: r.created_at as string,
});
export const toChange = (r: Row): Change => ({ id: Number(r.id), entity: r.entity as Change['entity'], entityId: r.entity_id as string });
