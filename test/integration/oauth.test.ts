import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/registry/sqlite-store.ts';
import { http } from '../helpers/clients.ts';
import { freePort, startGateway, type TestGateway } from '../helpers/gateway.ts';
import { clientSecret, CookieJar, startIdp, type BrowserResponse, type TestIdp } from '../helpers/oidc.ts';

const kHome = 'http://ui.example/home';
const kError = 'http://ui.example/error';
const kWebClient = 'fleetgate-web';

/** Where a failed sign-in sent the browser: the UI error URL, with `error` as its only parameter. */
function errorOf(r: BrowserResponse): string | null {
  expect(r.status, r.trail.join('\n')).toBe(303);
  const url = new URL(r.location!);
  expect(`${url.origin}${url.pathname}`).toBe(kError);
  expect([...url.searchParams.keys()]).toEqual(['error']);
  return url.searchParams.get('error');
}

function cookiesOf(r: BrowserResponse): Record<string, string> {
  return Object.fromEntries(r.setCookie.map((c) => [c.slice(0, c.indexOf('=')), c]));
}

describe('sign-in with Google / an OpenID Connect provider (fleetgate as relying party)', () => {
  let google: TestIdp;
  let keycloak: TestIdp;
  let gw: TestGateway;
  let authorize: string;

  beforeAll(async () => {
    const port = await freePort();
    const callback = (name: string) => `http://127.0.0.1:${port}/oauth/callback/${name}`;
    // Two real providers: "google" keeps the profile in the id_token (as Google does), the generic one in userinfo only.
    google = await startIdp([{ client_id: kWebClient, redirect_uris: [callback('google')] }]);
    keycloak = await startIdp([{ client_id: kWebClient, redirect_uris: [callback('keycloak')] }], { profileInIdToken: false });
    gw = await startGateway({
      httpPort: port,
      googleIssuer: google.issuer, googleClientId: kWebClient, googleClientSecret: clientSecret(kWebClient), googleRedirectUrl: callback('google'),
      oauthProvider: 'keycloak', oauthIssuer: keycloak.issuer, oauthClientId: kWebClient, oauthClientSecret: clientSecret(kWebClient), oauthRedirectUrl: callback('keycloak'),
      oauthUiRedirectUrl: kHome, oauthUiErrorUrl: kError,
    });
    authorize = `${gw.http}/oauth/authorize/google`;
  });
  afterAll(async () => {
    await gw.close();
    await Promise.all([google.close(), keycloak.close()]);
  });

  const profile = async (jar: CookieJar) => http('GET', `${gw.http}/users/profile`, { headers: { cookie: jar.header(new URL(`${gw.http}/users/profile`)) } });

  it('signs a new user in: 302 to the UI with fleetgate\'s tokens as HttpOnly, Secure, SameSite=Lax cookies; the API takes them', async () => {
    const r = await google.signIn(authorize, { login: 'ada', email: 'Ada@Example.com', name: 'Ada Lovelace', picture: 'https://example.com/ada.png', locale: 'en-GB' });
    expect(r.status, r.trail.join('\n')).toBe(302);
    expect(r.location).toBe(kHome);
    const cookies = cookiesOf(r);
    for (const name of ['access_token', 'refresh_token']) {
      expect(cookies[name]).toMatch(new RegExp(`^${name}=ey[^;]+; Path=/; Max-Age=\\d+; HttpOnly; Secure; SameSite=Lax$`));
    }
    // The state cookie is spent.
    expect(cookies.fg_oauth_state).toMatch(/^fg_oauth_state=; Path=\/oauth\/callback\/google; Max-Age=0/);
    const me = await profile(r.jar);
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ email: 'ada@example.com', name: 'Ada Lovelace', profile_picture: 'https://example.com/ada.png', locale: 'en-GB', role: 'user' });

    // Signing in again (the provider remembers the browser) is the same user, not a second one.
    const again = await google.signIn(authorize, { login: 'ada', jar: r.jar });
    expect(again.location).toBe(kHome);
    expect((await profile(again.jar)).json).toMatchObject({ id: (me.json as { id: string }).id });
    // A user of the provider alone has no password to sign in with.
    expect((await http('POST', `${gw.http}/users/tokens/issue`, { body: JSON.stringify({ email: 'ada@example.com', password: '' }) })).status).toBe(401);
  });

  it('links an existing local user with the same email instead of making a second account', async () => {
    const local = await http('POST', `${gw.http}/users`, { body: JSON.stringify({ email: 'grace@example.com', password: 'local password' }) });
    expect(local.status).toBe(201);
    const r = await google.signIn(authorize, { login: 'grace-google', email: 'grace@example.com' });
    expect(r.location).toBe(kHome);
    expect((await profile(r.jar)).json).toMatchObject({ id: (local.json as { id: string }).id });
    // The password still works.
    expect((await http('POST', `${gw.http}/users/tokens/issue`, { body: JSON.stringify({ email: 'grace@example.com', password: 'local password' }) })).status).toBe(201);
  });

  it('a generic provider (here named keycloak) whose profile is in userinfo only', async () => {
    const r = await keycloak.signIn(`${gw.http}/oauth/authorize/keycloak`, { login: 'kc-user', email: 'kc@example.com', name: 'K. C.' });
    expect(r.location, r.trail.join('\n')).toBe(kHome);
    expect((await profile(r.jar)).json).toMatchObject({ email: 'kc@example.com', name: 'K. C.' });
  });

  it('sends every failure to the UI error URL with a short message, and sets no session', async () => {
    expect(errorOf(await google.signIn(`${gw.http}/oauth/authorize/nope`, { login: 'x' }))).toBe('provider not configured');
    const unverified = await google.signIn(authorize, { login: 'mallory', email: 'mallory@example.com', emailVerified: false });
    expect(errorOf(unverified)).toBe('email not verified');
    expect(cookiesOf(unverified).access_token).toBeUndefined();
    expect(errorOf(await google.signIn(authorize, { login: 'bob', deny: true }))).toBe('access denied');
    // A callback for no configured provider sets no cookie: nothing from the URL reaches a Set-Cookie header.
    const odd = await google.signIn(`${gw.http}/oauth/callback/x;Domain=evil.example?state=s&code=c`, { login: 'x' });
    expect(errorOf(odd)).toBe('provider not configured');
    expect(odd.setCookie).toEqual([]);
  });

  describe('the callback', () => {
    /** A sign-in stopped just before the browser reaches fleetgate's callback. */
    const atCallback = async (login: string) => {
      const r = await google.signIn(authorize, { login, stopAt: (url) => url.pathname === '/oauth/callback/google' });
      expect(r.location, r.trail.join('\n')).toMatch(/\/oauth\/callback\/google\?/);
      return { url: new URL(r.location!), jar: r.jar };
    };
    const callback = (url: URL, cookie: string) => google.signIn(url.href, { login: 'unused', jar: jarWith(url, cookie) });
    const jarWith = (url: URL, cookie: string) => {
      const jar = new CookieJar();
      if (cookie !== '') jar.set(url, 'fg_oauth_state', cookie);
      return jar;
    };

    it('refuses a missing, a forged or a replayed state, a missing and a bad code', async () => {
      const { url, jar } = await atCallback('carol');
      const state = jar.get(url).fg_oauth_state!;
      expect(errorOf(await callback(url, ''))).toBe('invalid state');
      // A state token signed by someone else, or fleetgate's own for another sign-in.
      expect(errorOf(await callback(url, state.replace(/\.[^.]+$/, '.AAAA')))).toBe('invalid state');
      const other = await atCallback('dave');
      expect(errorOf(await callback(url, other.jar.get(other.url).fg_oauth_state!))).toBe('invalid state');
      // No code, then a made-up one: each attempt spends its state, so each needs a fresh sign-in.
      const noCode = await atCallback('erin');
      noCode.url.searchParams.delete('code');
      expect(errorOf(await callback(noCode.url, noCode.jar.get(noCode.url).fg_oauth_state!))).toBe('missing code');
      const badCode = await atCallback('frank');
      badCode.url.searchParams.set('code', 'made-up');
      expect(errorOf(await callback(badCode.url, badCode.jar.get(badCode.url).fg_oauth_state!))).toBe('code exchange failed');
      // Any provider error but a refusal by the user; its description never reaches the UI.
      const failed = await atCallback('grace');
      failed.url.searchParams.delete('code');
      failed.url.searchParams.set('error', 'server_error');
      failed.url.searchParams.set('error_description', 'internal details');
      expect(errorOf(await callback(failed.url, failed.jar.get(failed.url).fg_oauth_state!))).toBe('refused by the provider');
      // The genuine callback works once; the same URL and cookie again do not.
      expect((await callback(url, state)).location).toBe(kHome);
      expect(errorOf(await callback(url, state))).toBe('invalid state');
    });
  });

  it('refuses a disabled user', async () => {
    const r = await google.signIn(authorize, { login: 'heidi' });
    const { id } = (await profile(r.jar)).json as { id: string };
    const store = openSqliteStore(gw.config.store);
    await store.updateUser(id, { status: 'disabled' });
    store.close();
    expect(errorOf(await google.signIn(authorize, { login: 'heidi', jar: r.jar }))).toBe('user disabled');
  });

  it('sign-out ends the session: cookies cleared, refresh and access tokens refused', async () => {
    const r = await google.signIn(authorize, { login: 'ivan' });
    const jar = r.jar;
    const refresh = jar.get(`${gw.http}/`).refresh_token!;
    const out = await http('POST', `${gw.http}/oauth/logout`, { headers: { cookie: jar.header(new URL(`${gw.http}/oauth/logout`)) } });
    expect(out.status).toBe(204);
    expect(out.headers['set-cookie']).toEqual(expect.arrayContaining([expect.stringMatching(/^access_token=; Path=\/; Max-Age=0/), expect.stringMatching(/^refresh_token=; Path=\/; Max-Age=0/)]));
    expect((await http('POST', `${gw.http}/users/tokens/refresh`, { headers: { authorization: `Bearer ${refresh}` } })).status).toBe(401);
    expect((await profile(jar)).status).toBe(401);
    // Idempotent, and no oracle: without cookies, the same answer.
    expect((await http('POST', `${gw.http}/oauth/logout`)).status).toBe(204);
  });

  it('a cross-site page cannot ride on the cookie: a POST naming a foreign Origin carries no credential', async () => {
    const r = await google.signIn(authorize, { login: 'judy' });
    const cookie = r.jar.header(new URL(`${gw.http}/users/tokens/revoke`));
    const revoke = (origin: string) => http('POST', `${gw.http}/users/tokens/revoke`, { headers: { cookie, origin }, body: JSON.stringify({ token_id: 'none' }) });
    expect((await revoke('http://evil.example')).status).toBe(401);
    // A sandboxed page sends `Origin: null`.
    expect((await revoke('null')).status).toBe(401);
    // The UI's origin and the gateway's own are fine (404: authenticated, no such session).
    expect((await revoke('http://ui.example')).status).toBe(404);
    expect((await revoke(gw.http)).status).toBe(404);
  });
});

describe('sign-in refusals that depend on the setup', () => {
  it('provider unavailable (discovery fails), and no account for a new email when self-registration is off', async () => {
    const port = await freePort();
    const callback = `http://127.0.0.1:${port}/oauth/callback/google`;
    const idp = await startIdp([{ client_id: kWebClient, redirect_uris: [callback] }]);
    const down = await freePort();
    const common = { googleClientId: kWebClient, googleClientSecret: clientSecret(kWebClient), googleRedirectUrl: callback, oauthUiRedirectUrl: kHome, oauthUiErrorUrl: kError };
    const unreachable = await startGateway({ ...common, httpPort: port, googleIssuer: `http://127.0.0.1:${down}` });
    try {
      expect(errorOf(await idp.signIn(`${unreachable.http}/oauth/authorize/google`, { login: 'x' }))).toBe('provider unavailable');
    } finally {
      await unreachable.close();
    }
    const closed = await startGateway({ ...common, httpPort: port, googleIssuer: idp.issuer, selfRegistration: 'false' });
    try {
      expect(errorOf(await idp.signIn(`${closed.http}/oauth/authorize/google`, { login: 'newcomer' }))).toBe('no account for this email');
    } finally {
      await closed.close();
      await idp.close();
    }
  });
});
