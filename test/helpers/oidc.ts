import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import Provider, { type ClientMetadata } from 'oidc-provider';

export interface TestIdp {
  readonly issuer: string;
  /** a client-credentials access token (a JWT) for one of the provider's clients */
  token(clientId: string): Promise<string>;
  /**
   * The device authorization grant (RFC 8628) played through: the device asks for codes, a person opens the
   * verification link, confirms, signs in as `login` and consents (the provider's development pages), and the device
   * polls the token endpoint. Returns the access token (a JWT whose subject is `login`).
   */
  deviceToken(clientId: string, login: string): Promise<string>;
  /**
   * The person's half of the device flow alone, for a device that runs the grant itself (an example script): opens
   * `verificationUriComplete` (or the verification URI plus `userCode`), confirms, signs in and consents.
   * Returns the provider's last page.
   */
  approveDevice(verificationUri: string, person: string | Person, userCode?: string): Promise<BrowserResponse>;
  /**
   * A person in a browser signing in to a relying party (fleetgate's `/oauth/authorize/<provider>`): from `url`,
   * redirects are followed by hand with a cookie jar per host, the provider's sign-in page is submitted as
   * `person.login` (whose claims the provider then serves: email, email_verified, name, picture, locale) and its
   * consent page accepted. Stops at the first redirect that leaves the relying party's and the provider's hosts
   * (the UI redirect or error URL), or at a page that is not one of the provider's forms, and returns that response:
   * for fleetgate, its callback's 302/303 with its Set-Cookie headers.
   */
  signIn(url: string, person: Person & SignInOptions): Promise<BrowserResponse>;
  /** registers one more client (e.g. a code client once the relying party's redirect URL is known) */
  addClient(client: IdpClient): void;
  /** lifetime (seconds) of the JWT access tokens issued from now on (client credentials, device flow, refresh) */
  setAccessTokenTtl(seconds: number | undefined): void;
  /** replaces the provider's signing key (the old one stays published), as a key rotation at the IdP would */
  rotate(): void;
  /** stops publishing (and signing with) a key, as a provider does once a rotated-out key's tokens should end */
  retire(kid: string): void;
  close(): Promise<void>;
}

export interface IdpClient {
  readonly client_id: string;
  /**
   * a public device client (device authorization grant, and refresh_token: asking for `offline_access` gives the
   * device a refresh token) instead of a client-credentials one
   */
  readonly device?: boolean;
  /**
   * an authorization-code client instead (a relying party, e.g. fleetgate's sign-in): confidential, secret
   * `clientSecret(client_id)`, these exact redirect URIs, grant types authorization_code and refresh_token, response
   * type code, PKCE (S256) required, ES256 id_tokens
   */
  readonly redirect_uris?: readonly string[];
  /** how a code client authenticates at the token endpoint; the provider accepts no other (default client_secret_basic) */
  readonly token_endpoint_auth_method?: 'client_secret_basic' | 'client_secret_post';
  /** claims added to its access tokens */
  readonly claims?: Record<string, unknown>;
}

export interface IdpOptions {
  /**
   * true (default): email and profile claims are in the id_token, as Google and Keycloak put them; false: only the
   * userinfo endpoint has them (oidc-provider's own default, `conformIdTokenClaims`), so a relying party must call it
   */
  readonly profileInIdToken?: boolean;
  /** lifetime (seconds) of the JWT access tokens; default oidc-provider's (1 h, client credentials 10 min) */
  readonly accessTokenTtl?: number;
}

/** Who signs in at the provider, and the claims the provider then holds for that login (its `sub`). */
export interface Person {
  readonly login: string;
  /** default `<login>@example.com` */
  readonly email?: string;
  /** default true */
  readonly emailVerified?: boolean;
  /** default the login */
  readonly name?: string;
  /** default `https://example.com/<login>.png` */
  readonly picture?: string;
  /** default `en` */
  readonly locale?: string;
}

export interface SignInOptions {
  /** the browser's cookies; a new jar when absent. Pass the jar of an earlier sign-in to sign in again silently. */
  readonly jar?: CookieJar;
  /** refuse at the provider (its "Cancel" link): the relying party gets `error=access_denied` */
  readonly deny?: boolean;
  /** where to stop instead of following; default: a redirect that leaves the start URL's and the provider's hosts */
  readonly stopAt?: (url: URL) => boolean;
}

export interface BrowserResponse {
  /** the URL that gave this response */
  readonly url: string;
  readonly status: number;
  /** its Location header, resolved against `url` */
  readonly location: string | undefined;
  /** its raw Set-Cookie headers (already stored in `jar`) */
  readonly setCookie: string[];
  readonly body: string;
  readonly jar: CookieJar;
  /** every request made, as `METHOD url -> status`, for failure messages */
  readonly trail: string[];
}

interface StoredCookie {
  readonly value: string;
  readonly path: string;
  /** Unix ms; undefined: a session cookie */
  readonly expires: number | undefined;
}

/**
 * Cookies per host (host:port, stricter than a browser, which shares cookies across the ports of a host): RFC 6265
 * Path and Max-Age/Expires are honoured; Domain, Secure and SameSite are kept in the raw headers only (browsers take
 * Secure cookies from http://127.0.0.1 and localhost, and send Lax cookies on the provider's top-level redirect).
 */
export class CookieJar {
  private readonly hosts = new Map<string, Map<string, StoredCookie>>();

  /** Stores the Set-Cookie headers of a response from `url`. */
  store(url: URL, setCookie: readonly string[]): void {
    for (const header of setCookie) {
      const [pair = '', ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = url.pathname.slice(0, Math.max(1, url.pathname.lastIndexOf('/'))); // RFC 6265 §5.1.4 default-path
      let expires: number | undefined;
      for (const attribute of attributes) {
        const [key = '', ...rest] = attribute.split('=');
        const v = rest.join('=').trim();
        switch (key.trim().toLowerCase()) {
          case 'path':
            if (v.startsWith('/')) path = v;
            break;
          case 'max-age':
            expires = Date.now() + Number(v) * 1000;
            break;
          case 'expires':
            // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
            if (!attributes.some((a) => a.trim().toLowerCase().startsWith('max-age'))) expires = Date.parse(v);
            break;
        }
      }
      const cookies = this.hosts.get(url.host) ?? new Map<string, StoredCookie>();
      this.hosts.set(url.host, cookies);
      const key = `${name}\0${path}`;
      if (expires !== undefined && expires <= Date.now()) cookies.delete(key);
      else cookies.set(key, { value, path, expires });
    }
  }

  /** The Cookie header a browser would send to `url` ('' when none). */
  header(url: URL): string {
    return Object.entries(this.get(url)).map(([k, v]) => `${k}=${v}`).join('; ');
  }

  /** name -> value of the cookies sent to `url` (longest path first, as browsers order them). */
  get(url: URL | string): Record<string, string> {
    const target = typeof url === 'string' ? new URL(url) : url;
    const out: [string, StoredCookie][] = [];
    for (const [key, cookie] of this.hosts.get(target.host) ?? []) {
      if (cookie.expires !== undefined && cookie.expires <= Date.now()) continue;
      const p = cookie.path;
      const matches = target.pathname === p || (target.pathname.startsWith(p) && (p.endsWith('/') || target.pathname[p.length] === '/'));
      if (matches) out.push([key.slice(0, key.indexOf('\0')), cookie]);
    }
    out.sort((a, b) => b[1].path.length - a[1].path.length);
    const result: Record<string, string> = {};
    for (const [name, cookie] of out) if (!(name in result)) result[name] = cookie.value;
    return result;
  }

  /** Forgets one cookie of a host (every path), as a user clearing it would; for forged/missing state tests. */
  delete(url: URL | string, name: string): void {
    const cookies = this.hosts.get((typeof url === 'string' ? new URL(url) : url).host);
    for (const key of [...(cookies?.keys() ?? [])]) if (key.startsWith(`${name}\0`)) cookies!.delete(key);
  }

  /** Sets a cookie by hand (path /), e.g. a forged state cookie. */
  set(url: URL | string, name: string, value: string): void {
    this.store(typeof url === 'string' ? new URL(url) : url, [`${name}=${value}; Path=/`]);
  }
}

/** The secret of a client-credentials or code client of the test provider. */
export const clientSecret = (clientId: string): string => `${clientId}-secret`;

const kAudience = 'urn:fleetgate';
const kMaxHops = 30;

function esKey(kid: string) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}

function clientMetadata(c: IdpClient): ClientMetadata {
  const common = { client_id: c.client_id, id_token_signed_response_alg: 'ES256' } as const;
  if (c.device) return { ...common, token_endpoint_auth_method: 'none', grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'], redirect_uris: [], response_types: [] };
  if (c.redirect_uris !== undefined) {
    return {
      ...common, client_secret: clientSecret(c.client_id), redirect_uris: [...c.redirect_uris], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    };
  }
  return { ...common, client_secret: clientSecret(c.client_id), grant_types: ['client_credentials'], redirect_uris: [], response_types: [] };
}

/** The `<form>` of a page: its action and hidden inputs (the provider's pages are simple and regular). */
function formOf(html: string): { action: string; fields: Record<string, string> } | undefined {
  const action = /<form[^>]*\baction="([^"]+)"/.exec(html)?.[1];
  if (action === undefined) return undefined;
  const fields = Object.fromEntries([...html.matchAll(/<input[^>]*\btype="hidden"[^>]*>/g)].flatMap((m) => {
    const name = /\bname="([^"]+)"/.exec(m[0])?.[1];
    const value = /\bvalue="([^"]*)"/.exec(m[0])?.[1] ?? '';
    return name === undefined ? [] : [[name, value.replaceAll('&amp;', '&').replaceAll('&quot;', '"')]];
  }));
  return { action: action.replaceAll('&amp;', '&'), fields };
}

/**
 * A real OpenID Connect provider (panva's oidc-provider), in-process on a free port: discovery, JWKS, the
 * client-credentials grant and the device flow issuing ES256 JWT access tokens for the audience urn:fleetgate, and
 * the authorization-code flow (PKCE required) for relying parties, with the provider's development sign-in and
 * consent pages, where any login is accepted and the claims of a login are those its sign-in was given.
 */
export async function startIdp(clients: IdpClient[], options: IdpOptions = {}): Promise<TestIdp> {
  let handler: ReturnType<Provider['callback']> = async () => undefined;
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const issuerHost = new URL(issuer).host;
  const all = [...clients];
  const byId = new Map(all.map((c) => [c.client_id, c]));
  const people = new Map<string, Person>();
  let keys = [esKey('idp-key-1')];
  let keysMade = 1;
  let accessTokenTtl = options.accessTokenTtl;

  const profileOf = (sub: string) => {
    const p = people.get(sub) ?? { login: sub };
    return {
      sub, email: p.email ?? `${sub}@example.com`, email_verified: p.emailVerified ?? true, name: p.name ?? sub,
      picture: p.picture ?? `https://example.com/${encodeURIComponent(sub)}.png`, locale: p.locale ?? 'en',
    };
  };

  const build = () => {
    const provider = new Provider(issuer, {
      clients: all.map(clientMetadata),
      jwks: { keys: keys as never },
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => profileOf(sub) }),
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'picture', 'locale'] },
      conformIdTokenClaims: options.profileInIdToken === false,
      pkce: { required: () => true },
      features: {
        // The provider's own development sign-in and consent pages: any login is accepted.
        devInteractions: { enabled: true },
        deviceFlow: { enabled: true },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          // Code clients get an opaque access token for the userinfo endpoint; the others a JWT for fleetgate.
          defaultResource: (_ctx, client, oneOf) => (byId.get(client?.clientId ?? '')?.redirect_uris !== undefined ? (oneOf as never) : kAudience),
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({
            scope: 'telemetry', audience: kAudience, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } },
            ...(accessTokenTtl !== undefined && { accessTokenTTL: accessTokenTtl }),
          }),
        },
      },
      extraTokenClaims: (_ctx, token) => byId.get((token as { clientId?: string }).clientId ?? '')?.claims,
    });
    handler = provider.callback();
  };
  build();

  /**
   * The browser: requests `url`, follows redirects by hand (303 -> GET; 307/308 keep method and body), stores and
   * sends cookies per host, and on the provider's pages submits the form a person would: the device-code forms as
   * they are, the sign-in form as `person`, the consent form accepted (or the Cancel link with `deny`).
   */
  const browse = async (start: string, person: Person | undefined, opts: SignInOptions & { method?: string; body?: URLSearchParams } = {}): Promise<BrowserResponse> => {
    const jar = opts.jar ?? new CookieJar();
    const startHost = new URL(start).host;
    const stopAt = opts.stopAt ?? ((url: URL) => url.host !== startHost && url.host !== issuerHost);
    const trail: string[] = [];
    let url = new URL(start);
    let method = opts.method ?? 'GET';
    let body = opts.body;
    for (let hop = 0; hop < kMaxHops; hop++) {
      const cookie = jar.header(url);
      const res = await fetch(url, {
        method, body, redirect: 'manual',
        headers: { ...(cookie && { cookie }), ...(body && { 'content-type': 'application/x-www-form-urlencoded' }) },
      });
      const setCookie = res.headers.getSetCookie();
      jar.store(url, setCookie);
      const text = await res.text();
      trail.push(`${method} ${url.href} -> ${res.status}`);
      const location = res.headers.get('location') ?? undefined;
      const reply: BrowserResponse = { url: url.href, status: res.status, location: location && new URL(location, url).href, setCookie, body: text, jar, trail };
      if (res.status >= 300 && res.status < 400 && reply.location !== undefined) {
        const next = new URL(reply.location);
        if (stopAt(next)) return reply;
        if (res.status !== 307 && res.status !== 308) {
          method = 'GET';
          body = undefined;
        }
        url = next;
        continue;
      }
      const form = res.status === 200 && url.host === issuerHost ? formOf(text) : undefined;
      if (form === undefined || person === undefined) return reply;
      const action = new URL(form.action, url);
      method = 'POST';
      if (form.fields.prompt === 'login') {
        if (opts.deny) {
          const abort = /href="([^"]*\/abort)"/.exec(text)?.[1];
          if (abort === undefined) throw new Error(`no abort link on the sign-in page; ${trail.join(', ')}`);
          url = new URL(abort.replaceAll('&amp;', '&'), url);
          method = 'GET';
          body = undefined;
          continue;
        }
        people.set(person.login, person);
        body = new URLSearchParams({ prompt: 'login', login: person.login, password: 'any' });
      } else {
        // consent ({prompt: consent}) and the device flow's code and confirm forms: submitted as they are
        body = new URLSearchParams(form.fields);
      }
      url = action;
    }
    throw new Error(`more than ${kMaxHops} requests: ${trail.join(', ')}`);
  };

  const approveDevice = (verificationUri: string, person: string | Person, userCode?: string) => {
    const who = typeof person === 'string' ? { login: person } : person;
    const start = userCode === undefined ? verificationUri : `${verificationUri}${verificationUri.includes('?') ? '&' : '?'}user_code=${encodeURIComponent(userCode)}`;
    return browse(start, who);
  };

  return {
    issuer,
    async token(clientId) {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${clientId}:${clientSecret(clientId)}`).toString('base64') },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'telemetry', resource: kAudience }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string };
      if (body.access_token === undefined) throw new Error(`token request failed: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async deviceToken(clientId, login) {
      const codes = (await (await fetch(`${issuer}/device/auth`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: clientId, scope: 'openid telemetry', resource: kAudience }),
      })).json()) as { device_code: string; user_code: string; verification_uri_complete: string; interval: number };

      // The person, in a browser: the verification link auto-posts the code, the provider asks to confirm it, then
      // sign-in, then consent.
      const page = await approveDevice(codes.verification_uri_complete, login);

      // The device, polling.
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${issuer}/token`, {
          method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: codes.device_code, client_id: clientId }),
        });
        const body = (await res.json()) as { access_token?: string; error?: string };
        if (body.access_token !== undefined) return body.access_token;
        if (body.error !== 'authorization_pending' && body.error !== 'slow_down') {
          throw new Error(`device flow failed: ${JSON.stringify(body)}; ${page.trail.join(', ')}; last page: ${page.body.slice(0, 300)}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('device flow: no token');
    },
    approveDevice,
    signIn: (url, person) => browse(url, person, person),
    addClient(client) {
      all.push(client);
      byId.set(client.client_id, client);
      build();
    },
    setAccessTokenTtl(seconds) {
      accessTokenTtl = seconds;
    },
    rotate() {
      // oidc-provider signs with the first key of its set.
      keys = [esKey(`idp-key-${++keysMade}`), ...keys];
      build();
    },
    retire(kid) {
      keys = keys.filter((key) => key.kid !== kid);
      build();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
