import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { kTokenType, type AuthEngine } from '../auth/engine.ts';
import { kDummyPasswordHash } from '../auth/password.ts';
import type { AuthPool } from '../auth/pool.ts';
import type { AuthLimiter } from '../auth/rate-limit.ts';
import { GatewayError, ok, type Result } from '../errors.ts';
import { parseInput } from '../parse-input.ts';
import { writeThrough } from '../registry/write-through.ts';
import type { Store } from '../registry/store.ts';
import type { Session, User } from '../registry/types.ts';
import type { RegistryView } from '../registry/view.ts';
import type { UserPrincipal } from '../types.ts';
import type { Mailer } from './mailer.ts';

export interface TokenSettings {
  readonly issuer: string;
  /** seconds */
  readonly accessTtl: number;
  readonly refreshTtl: number;
  readonly recoveryTtl: number;
  /** link mailed for a reset; `?token=<recovery token>` is appended. Asked for at each mail: it can name a port only known once listening. */
  readonly resetUrl: () => string;
  /** anyone may make an account (POST /users, or a first sign-in through an identity provider) */
  readonly selfRegistration: boolean;
}

/** What an identity provider says of a user: its verified id_token claims, or its userinfo. */
export interface ExternalProfile {
  readonly sub: string;
  readonly email?: string;
  readonly email_verified?: boolean;
  readonly name?: string;
  readonly picture?: string;
  readonly locale?: string;
}

const password = z.string().min(8, 'password must be at least 8 characters').max(1024);
const kUserSchemas = {
  register: z.object({
    name: z.string().trim().min(1).max(256).optional(),
    username: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'username: letters, digits, "_", "." and "-"').optional(),
    email: z.email(),
    password,
  }),
  issue: z.union([z.object({ email: z.string(), password: z.string() }), z.object({ username: z.string(), password: z.string() })]),
  revoke: z.object({ token_id: z.string().min(1) }),
  resetRequest: z.object({ email: z.string() }),
  reset: z.object({ password, confirm_password: z.string() }).refine((b) => b.password === b.confirm_password, 'confirm_password does not match password'),
};

export const toUserJson = (u: User) => ({
  id: u.id, name: u.name, username: u.username, email: u.email, role: u.role, status: u.status, created_at: u.createdAt,
  ...(u.picture !== null && { profile_picture: u.picture }), ...(u.locale !== null && { locale: u.locale }),
});
export const toSessionJson = (s: Session) => ({
  token_id: s.id, created_at: s.createdAt, expires_at: new Date(s.expiresAt * 1000).toISOString(), revoked: s.revokedAt !== null,
});

export interface TokenPair {
  readonly access_token: string;
  readonly refresh_token: string;
  readonly access_type: 'Bearer';
}

const unwrap = <T>(r: Result<T>): T => {
  if (!r.ok) throw new GatewayError(r.code, r.message, r.detail as Record<string, unknown> | undefined);
  return r.value;
};

/**
 * Users and fleetgate's own tokens (DESIGN.md §8): register, sign in (a session: one refresh-token chain), refresh
 * (rotation; a replayed refresh token ends its session), revoke, list sessions, password reset by a single-use
 * recovery token sent by mail. Passwords and signatures are computed on the auth workers.
 */
export class UserService {
  private readonly store: Store;
  private readonly view: RegistryView;
  private readonly pool: AuthPool;
  private readonly auth: AuthEngine;
  private readonly mailer: Mailer;
  private readonly settings: TokenSettings;
  private readonly limiter: AuthLimiter | undefined;

  constructor(deps: { store: Store; view: RegistryView; pool: AuthPool; auth: AuthEngine; mailer: Mailer; settings: TokenSettings; limiter?: AuthLimiter }) {
    this.store = deps.store;
    this.view = deps.view;
    this.pool = deps.pool;
    this.auth = deps.auth;
    this.mailer = deps.mailer;
    this.settings = deps.settings;
    this.limiter = deps.limiter;
  }

  async register(input: unknown, role: User['role'] = 'user'): Promise<User> {
    const body = parseInput(kUserSchemas.register, input);
    const user: User = {
      id: randomUUID(), email: body.email.toLowerCase(), username: body.username ?? null, name: body.name ?? null,
      passwordHash: await this.pool.hashPassword(body.password), role, status: 'enabled', createdAt: new Date().toISOString(), picture: null, locale: null,
    };
    await this.write(() => this.store.insertUser(user));
    return user;
  }

  /**
   * POST /users/tokens/issue: a new session and its first token pair. The failure limits (docs/RATE-LIMITS.md) of the
   * login from `address` are checked before any hashing, so a refused guess costs nothing.
   */
  async issue(input: unknown, address = ''): Promise<TokenPair> {
    const body = parseInput(kUserSchemas.issue, input);
    const login = 'email' in body ? body.email.toLowerCase() : body.username;
    const account = 'user:' + login;
    const refused = this.limiter?.check('http', account, address);
    if (refused !== undefined) unwrap(refused);
    const user = await this.verifyLogin(login, body.password).then(ok, (err: unknown) => (err instanceof GatewayError ? err.toFailure() : Promise.reject(err)));
    this.limiter?.settle('http', account, () => address, user);
    return this.startSession(unwrap(user));
  }

  /**
   * Sign-in through an identity provider whose id_token was verified: the user its subject names; else the user with
   * the same (verified) email, now linked to it, never a second account; else a new user without a password (when
   * self-registration is on). Then a session, as after a password sign-in. Refusals carry short messages only: they
   * end up in the UI's error URL.
   */
  async signInExternal(provider: string, profile: ExternalProfile): Promise<TokenPair> {
    if (profile.email === undefined || profile.email_verified !== true) throw new GatewayError('FG_ERR_SIGN_IN_FAILED', 'email not verified');
    let user = await this.store.getUserByIdentity(provider, profile.sub);
    if (user === undefined) {
      const email = profile.email.toLowerCase();
      const identity = { provider, subject: profile.sub, createdAt: new Date().toISOString() };
      user = await this.store.getUserByLogin(email);
      if (user !== undefined) {
        const { id } = user;
        await this.write(() => this.store.insertIdentity({ ...identity, userId: id }));
      } else if (!this.settings.selfRegistration) {
        throw new GatewayError('FG_ERR_SIGN_IN_FAILED', 'no account for this email');
      } else {
        user = {
          id: randomUUID(), email, username: null, name: profile.name ?? null, passwordHash: '', role: 'user', status: 'enabled',
          createdAt: identity.createdAt, picture: profile.picture ?? null, locale: profile.locale ?? null,
        };
        const created = user;
        await this.write(() => this.store.insertUser(created, { ...identity, userId: created.id }));
      }
    }
    if (user.status !== 'enabled') throw new GatewayError('FG_ERR_SIGN_IN_FAILED', 'user disabled');
    return this.startSession(user);
  }

  /** Sign-out: ends the session of a refresh token; quietly does nothing for a token that is bad or already ended. */
  async signOut(refreshToken: string): Promise<void> {
    const claims = await this.auth.verifyOwn(refreshToken, kTokenType.refresh);
    if (!claims.ok) return;
    const session = await this.store.getSession(String(claims.value.sid));
    if (session !== undefined && session.revokedAt === null) await this.write(() => this.store.updateSession(session.id, { revokedAt: new Date().toISOString() }));
  }

  private async startSession(user: User): Promise<TokenPair> {
    const now = Math.floor(Date.now() / 1000);
    const session: Session = {
      id: randomUUID(), userId: user.id, refreshJti: randomUUID(), createdAt: new Date().toISOString(),
      expiresAt: now + this.settings.refreshTtl, revokedAt: null,
    };
    await this.write(() => this.store.insertSession(session));
    return this.pair(user.id, session, now);
  }

  /** The user behind an email/username and password, or FG_ERR_AUTHN_INVALID (the same for both kinds of mistake). */
  async verifyLogin(login: string, password: string): Promise<User> {
    const user = await this.store.getUserByLogin(login);
    // Hash even for an unknown login, so timing does not tell which logins exist.
    // A user of an identity provider alone has no password: hashed against the dummy too, so they look alike.
    const matches = await this.pool.verifyPassword(password, user?.passwordHash || kDummyPasswordHash);
    if (user === undefined || user.passwordHash === '' || !matches) throw new GatewayError('FG_ERR_AUTHN_INVALID', 'wrong login or password');
    if (user.status !== 'enabled') throw new GatewayError('FG_ERR_AUTHN_DISABLED', 'user is disabled');
    return user;
  }

  /** POST /users/tokens/refresh: rotates the refresh token; a stale one (a replay) revokes the whole session. */
  async refresh(refreshToken: string): Promise<TokenPair> {
    const claims = unwrap(await this.auth.verifyOwn(refreshToken, kTokenType.refresh));
    const session = await this.store.getSession(String(claims.sid));
    if (session === undefined || session.revokedAt !== null || session.expiresAt * 1000 <= Date.now()) {
      throw new GatewayError('FG_ERR_AUTHN_INVALID', 'session revoked or expired');
    }
    if (session.refreshJti !== claims.jti) {
      await this.write(() => this.store.updateSession(session.id, { revokedAt: new Date().toISOString() }));
      throw new GatewayError('FG_ERR_AUTHN_INVALID', 'refresh token already used: session revoked');
    }
    const user = this.view.user(session.userId);
    if (user === undefined || user.status !== 'enabled') throw new GatewayError('FG_ERR_AUTHN_DISABLED', 'user is disabled');
    const next = { ...session, refreshJti: randomUUID() };
    await this.write(() => this.store.updateSession(session.id, { refreshJti: next.refreshJti }));
    return this.pair(user.id, next, Math.floor(Date.now() / 1000));
  }

  profile(principal: UserPrincipal): User {
    const user = this.view.user(principal.id);
    if (user === undefined) throw new GatewayError('FG_ERR_NOT_FOUND', 'user not found');
    return user;
  }

  async sessions(principal: UserPrincipal): Promise<Session[]> {
    return this.store.listSessions(principal.id);
  }

  /** POST /users/tokens/revoke: ends a session (its refresh token and every access token made from it). */
  async revoke(principal: UserPrincipal, input: unknown): Promise<void> {
    const { token_id } = parseInput(kUserSchemas.revoke, input);
    const session = await this.store.getSession(token_id);
    if (session === undefined || (session.userId !== principal.id && !this.view.isAdmin(principal.id))) {
      throw new GatewayError('FG_ERR_NOT_FOUND', `token "${token_id}" not found`);
    }
    if (session.revokedAt === null) await this.write(() => this.store.updateSession(session.id, { revokedAt: new Date().toISOString() }));
  }

  /** POST /password/reset-request: mails a recovery link if the email is known; the answer never says whether it is. */
  async requestReset(input: unknown): Promise<void> {
    const { email } = parseInput(kUserSchemas.resetRequest, input);
    const user = await this.store.getUserByLogin(email.toLowerCase());
    if (user === undefined || user.status !== 'enabled') return;
    const now = Math.floor(Date.now() / 1000);
    const token = await this.pool.sign({
      iss: this.settings.issuer, sub: user.id, type: kTokenType.recovery, jti: randomUUID(), iat: now, exp: now + this.settings.recoveryTtl,
    });
    const base = this.settings.resetUrl();
    const link = `${base}${base.includes('?') ? '&' : '?'}token=${token}`;
    await this.mailer.send({
      to: user.email,
      subject: 'fleetgate password reset',
      text: `Someone asked to reset the password of this account. To choose a new one, open within ${Math.round(this.settings.recoveryTtl / 60)} minutes:\n\n${link}\n\nIf it was not you, ignore this mail.`,
    });
  }

  /** PUT /password/reset: sets the password once per recovery token, and ends every session of the user. */
  async reset(recoveryToken: string, input: unknown): Promise<void> {
    const claims = unwrap(await this.auth.verifyOwn(recoveryToken, kTokenType.recovery));
    const body = parseInput(kUserSchemas.reset, input);
    if (!(await this.store.useToken(String(claims.jti), this.auth.acceptedUntil(claims)))) {
      throw new GatewayError('FG_ERR_AUTHN_INVALID', 'recovery token already used');
    }
    const userId = String(claims.sub);
    const hash = await this.pool.hashPassword(body.password);
    await this.write(async () => {
      await this.store.updateUser(userId, { passwordHash: hash });
      const now = new Date().toISOString();
      for (const s of await this.store.listSessions(userId)) if (s.revokedAt === null) await this.store.updateSession(s.id, { revokedAt: now });
    });
  }

  /** The admin of FLEETGATE_ADMIN_EMAIL/PASSWORD: created on first start, password and role restored on every start. */
  async ensureAdmin(email: string, password: string): Promise<'created' | 'updated' | 'unchanged'> {
    const user = await this.store.getUserByLogin(email.toLowerCase());
    if (user === undefined) {
      await this.register({ email, password, name: 'admin' }, 'admin');
      return 'created';
    }
    if (user.role === 'admin' && user.status === 'enabled' && (await this.pool.verifyPassword(password, user.passwordHash))) return 'unchanged';
    const passwordHash = await this.pool.hashPassword(password);
    await this.write(() => this.store.updateUser(user.id, { passwordHash, role: 'admin', status: 'enabled' }));
    return 'updated';
  }

  private async pair(userId: string, session: Session, now: number): Promise<TokenPair> {
    const { issuer, accessTtl } = this.settings;
    const [access, refresh] = await Promise.all([
      this.pool.sign({ iss: issuer, sub: userId, type: kTokenType.access, sid: session.id, jti: randomUUID(), iat: now, exp: Math.min(now + accessTtl, session.expiresAt) }),
      this.pool.sign({ iss: issuer, sub: userId, type: kTokenType.refresh, sid: session.id, jti: session.refreshJti, iat: now, exp: session.expiresAt }),
    ]);
    return { access_token: access, refresh_token: refresh, access_type: 'Bearer' };
  }

  private write<T>(op: () => Promise<T>): Promise<T> {
    return writeThrough(this.view, op);
  }
}
