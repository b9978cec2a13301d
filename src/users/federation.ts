import * as oidc from 'openid-client';
import { kTokenType, type AuthEngine } from '../auth/engine.ts';
import type { AuthPool } from '../auth/pool.ts';
import type { GatewayConfig } from '../config.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Store } from '../registry/store.ts';
import type { ExternalProfile, TokenPair, UserService } from './service.ts';

/** An OpenID Connect provider users sign in with; fleetgate is its relying party. */
export interface SignInProvider {
  readonly name: string;
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** as registered at the provider: `https://<gateway>/oauth/callback/<name>` */
  readonly redirectUrl: string;
}

/** The providers the config enables: the Google preset and one generic provider (config.ts checks completeness). */
export function signInProviders(config: GatewayConfig): SignInProvider[] {
  const providers: SignInProvider[] = [];
  if (config.googleClientId !== '') {
    providers.push({ name: 'google', issuer: config.googleIssuer, clientId: config.googleClientId, clientSecret: config.googleClientSecret, redirectUrl: config.googleRedirectUrl });
  }
  if (config.oauthIssuer !== '') {
    providers.push({ name: config.oauthProvider, issuer: config.oauthIssuer, clientId: config.oauthClientId, clientSecret: config.oauthClientSecret, redirectUrl: config.oauthRedirectUrl });
  }
  return providers;
}

/** What a browser gets to start a sign-in: where to go, and the state cookie that binds the callback to it. */
export interface SignInStart {
  readonly location: string;
  readonly stateCookie: string;
}

const kScope = 'openid email profile';
/** seconds a browser has to come back from the provider */
export const kStateTtl = 600;

const refused = (message: string) => new GatewayError('FG_ERR_SIGN_IN_FAILED', message);

/**
 * Sign-in with Google or any OpenID Connect provider (authorization code flow with PKCE, state and nonce), through
 * openid-client. Nothing is kept in memory between the two legs: state, nonce and PKCE verifier travel in a short-lived
 * token signed by fleetgate (an HttpOnly cookie), used once (the store's used-token table), so any instance behind a
 * load balancer can take the callback. The provider's own tokens are dropped once the profile is read.
 */
export class FederatedSignIn {
  private readonly providers: ReadonlyMap<string, SignInProvider>;
  /** discovery per provider, done on first use and again after a failure */
  private readonly discovered = new Map<string, Promise<oidc.Configuration>>();
  private readonly deps: { users: UserService; pool: AuthPool; auth: AuthEngine; store: Store; issuer: string; logger: Logger };

  constructor(providers: readonly SignInProvider[], deps: FederatedSignIn['deps']) {
    this.providers = new Map(providers.map((p) => [p.name, p]));
    this.deps = deps;
  }

  /** A provider of this name is configured. */
  has(name: string): boolean {
    return this.providers.has(name);
  }

  /** GET /oauth/authorize/<name> */
  async begin(name: string): Promise<SignInStart> {
    const provider = this.provider(name);
    const configuration = await this.configuration(provider);
    const [state, nonce, verifier] = [oidc.randomState(), oidc.randomNonce(), oidc.randomPKCECodeVerifier()];
    const now = Math.floor(Date.now() / 1000);
    const stateCookie = await this.deps.pool.sign({
      iss: this.deps.issuer, type: kTokenType.signInState, jti: state, nonce, pkce: verifier, prv: name, iat: now, exp: now + kStateTtl,
    });
    const url = oidc.buildAuthorizationUrl(configuration, {
      redirect_uri: provider.redirectUrl, scope: kScope, state, nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    return { location: url.href, stateCookie };
  }

  /** GET /oauth/callback/<name>?<query>, with the state cookie of begin(): fleetgate's own tokens for the user. */
  async finish(name: string, query: string, stateCookie: string): Promise<TokenPair> {
    const provider = this.provider(name);
    const params = new URLSearchParams(query);
    const verified = stateCookie === '' ? undefined : await this.deps.auth.verifyOwn(stateCookie, kTokenType.signInState);
    const state = verified?.ok ? verified.value : undefined;
    if (state === undefined || state.prv !== name || state.jti !== params.get('state')) throw refused('invalid state');
    // Once only: a replayed callback URL (with its cookie) gets nothing, on any instance.
    if (!(await this.deps.store.useToken(String(state.jti), this.deps.auth.acceptedUntil(state)))) throw refused('invalid state');
    if (params.has('error')) throw refused(params.get('error') === 'access_denied' ? 'access denied' : 'refused by the provider');
    if (!params.has('code')) throw refused('missing code');

    const configuration = await this.configuration(provider);
    // openid-client sends as redirect_uri this URL without its query: the registered one, whatever the proxy in front.
    const current = new URL(provider.redirectUrl);
    current.search = query;
    let profile: ExternalProfile;
    try {
      const tokens = await oidc.authorizationCodeGrant(configuration, current, {
        pkceCodeVerifier: String(state.pkce), expectedState: String(state.jti), expectedNonce: String(state.nonce), idTokenExpected: true,
      });
      const claims = tokens.claims()!;
      // Some providers keep the profile in userinfo only.
      profile = (claims.email === undefined ? await oidc.fetchUserInfo(configuration, tokens.access_token, claims.sub) : claims) as ExternalProfile;
    } catch (err) {
      this.deps.logger.warn({ provider: name, reason: (err as { code?: string }).code ?? (err as Error).name }, 'sign-in code exchange failed');
      throw refused('code exchange failed');
    }
    return this.deps.users.signInExternal(name, profile);
  }

  private provider(name: string): SignInProvider {
    const provider = this.providers.get(name);
    if (provider === undefined) throw refused('provider not configured');
    return provider;
  }

  private configuration(provider: SignInProvider): Promise<oidc.Configuration> {
    let discovery = this.discovered.get(provider.name);
    if (discovery === undefined) {
      // Plain http only for an issuer configured so (a development or test provider).
      const insecure = new URL(provider.issuer).protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : undefined;
      discovery = oidc.discovery(new URL(provider.issuer), provider.clientId, provider.clientSecret, oidc.ClientSecretBasic(provider.clientSecret), insecure);
      discovery.catch((err: unknown) => {
        this.discovered.delete(provider.name);
        this.deps.logger.warn({ provider: provider.name, issuer: provider.issuer, reason: (err as Error).message }, 'sign-in provider discovery failed');
      });
      this.discovered.set(provider.name, discovery);
    }
    return discovery.catch(() => {
      throw refused('provider unavailable');
    });
  }
}
