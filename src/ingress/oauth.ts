import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { GatewayError } from '../errors.ts';
import { kStateTtl, type FederatedSignIn } from '../users/federation.ts';
import type { TokenPair } from '../users/service.ts';
import type { IngressContext } from './context.ts';
import { cookieValue, sessionCookie } from './cookies.ts';

const kStateCookie = 'fg_oauth_state';

interface Reply {
  readonly status: '302 Found' | '303 See Other' | '204 No Content';
  readonly location?: string;
  readonly cookies: readonly string[];
}

/**
 * Browser sign-in with Google / OIDC (DESIGN.md §8): `GET /oauth/authorize/<provider>` (302 to the provider, state
 * cookie set), `GET /oauth/callback/<provider>` (302 to the UI with fleetgate's access and refresh tokens as cookies),
 * and `POST /oauth/logout` (ends the session, clears the cookies). Every failure of the first two is a 303 to the UI
 * error URL with a short `?error=`.
 */
export function mountSignIn(app: TemplatedApp, ctx: IngressContext, signIn: FederatedSignIn): void {
  const { config, users, logger } = ctx;
  const stateCookiePath = (name: string) => `/oauth/callback/${name}`;
  const sessionCookies = (pair: TokenPair) => [
    sessionCookie('access_token', pair.access_token, config.jwtAccessTtl),
    sessionCookie('refresh_token', pair.refresh_token, config.jwtRefreshTtl),
  ];
  const kSignedOut = [sessionCookie('access_token', '', 0), sessionCookie('refresh_token', '', 0)];

  /** Runs `work` off the request, then writes its reply; a refusal goes to the UI error URL, with `cookies` still set. */
  const reply = (res: HttpResponse, work: () => Promise<Reply>, onError: { readonly cookies: readonly string[] }) => {
    let aborted = false;
    const settle = ctx.inflight.begin();
    res.onAborted(() => {
      aborted = true;
      settle();
    });
    void (ctx.closing() ? Promise.reject(new GatewayError('FG_ERR_SIGN_IN_FAILED', 'server shutting down')) : work()).catch((err: unknown): Reply => {
      if (!(err instanceof GatewayError)) logger.error({ err }, 'sign-in failed');
      const message = err instanceof GatewayError ? err.message : 'sign-in failed';
      const location = new URL(config.oauthUiErrorUrl);
      location.searchParams.set('error', message);
      return { status: '303 See Other', location: location.href, cookies: onError.cookies };
    }).then((out) => {
      settle();
      if (aborted) return;
      res.cork(() => {
        res.writeStatus(out.status).writeHeader('cache-control', 'no-store');
        if (out.location !== undefined) res.writeHeader('location', out.location);
        for (const cookie of out.cookies) res.writeHeader('set-cookie', cookie);
        res.end();
      });
    });
  };

  app.get('/oauth/authorize/:provider', (res: HttpResponse, req: HttpRequest) => {
    const name = req.getParameter(0) ?? '';
    reply(res, async () => {
      const start = await signIn.begin(name);
      return { status: '302 Found', location: start.location, cookies: [sessionCookie(kStateCookie, start.stateCookie, kStateTtl, stateCookiePath(name))] };
    }, { cookies: [] });
  });

  app.get('/oauth/callback/:provider', (res: HttpResponse, req: HttpRequest) => {
    const name = req.getParameter(0) ?? '';
    const [query, state] = [req.getQuery() ?? '', cookieValue(req.getHeader('cookie'), kStateCookie)];
    // The state cookie is spent either way (a path made only of a configured provider's name: nothing from the URL
    // goes into a Set-Cookie header as is).
    const clearState = signIn.has(name) ? [sessionCookie(kStateCookie, '', 0, stateCookiePath(name))] : [];
    reply(res, async () => {
      const pair = await signIn.finish(name, query, state);
      return { status: '302 Found', location: config.oauthUiRedirectUrl, cookies: [...clearState, ...sessionCookies(pair)] };
    }, { cookies: clearState });
  });

  app.post('/oauth/logout', (res: HttpResponse, req: HttpRequest) => {
    const refresh = cookieValue(req.getHeader('cookie'), 'refresh_token');
    reply(res, async () => {
      await users.signOut(refresh);
      return { status: '204 No Content', cookies: kSignedOut };
    }, { cookies: kSignedOut });
  });
}
