import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';

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
  /** replaces the provider's signing key (the old one stays published), as a key rotation at the IdP would */
  rotate(): void;
  close(): Promise<void>;
}

export interface IdpClient {
  readonly client_id: string;
  /** a public device client (device authorization grant) instead of a client-credentials one */
  readonly device?: boolean;
  /** claims added to its access tokens */
  readonly claims?: Record<string, unknown>;
}

const kAudience = 'urn:fleetgate';

function esKey(kid: string) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}

/**
 * A real OpenID Connect provider (panva's oidc-provider), in-process on a free port: discovery, JWKS and the
 * client-credentials grant issuing ES256 JWT access tokens for the audience urn:fleetgate.
 */
export async function startIdp(clients: IdpClient[]): Promise<TestIdp> {
  let handler: ReturnType<Provider['callback']> = async () => undefined;
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const byId = new Map(clients.map((c) => [c.client_id, c]));
  let keys = [esKey('idp-key-1')];

  const build = () => {
    const provider = new Provider(issuer, {
      clients: clients.map((c) => c.device
        ? { client_id: c.client_id, token_endpoint_auth_method: 'none', grant_types: ['urn:ietf:params:oauth:grant-type:device_code'], redirect_uris: [], response_types: [], id_token_signed_response_alg: 'ES256' }
        : { client_id: c.client_id, client_secret: `${c.client_id}-secret`, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], id_token_signed_response_alg: 'ES256' }),
      jwks: { keys: keys as never },
      features: {
        // The provider's own development sign-in and consent pages: any login is accepted.
        devInteractions: { enabled: true },
        deviceFlow: { enabled: true },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => kAudience,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: 'telemetry', audience: kAudience, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
        },
      },
      extraTokenClaims: (_ctx, token) => byId.get((token as { clientId?: string }).clientId ?? '')?.claims,
    });
    handler = provider.callback();
  };
  build();

  return {
    issuer,
    async token(clientId) {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${clientId}:${clientId}-secret`).toString('base64') },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'telemetry', resource: kAudience }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string };
      if (body.access_token === undefined) throw new Error(`token request failed: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async deviceToken(clientId, login) {
      const form = (body: Record<string, string>) => ({ 'content-type': 'application/x-www-form-urlencoded', body: new URLSearchParams(body) });
      const codes = (await (await fetch(`${issuer}/device/auth`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: clientId, scope: 'openid telemetry', resource: kAudience }),
      })).json()) as { device_code: string; user_code: string; verification_uri_complete: string; interval: number };

      // The person, in a browser: cookies kept, redirects followed by hand.
      const jar = new Map<string, string>();
      const browse = async (url: string, init: { method?: string; body?: URLSearchParams } = {}): Promise<string> => {
        let next: string | undefined = url;
        let request = init;
        let html = '';
        while (next !== undefined) {
          const res: Response = await fetch(new URL(next, issuer), {
            method: request.method ?? 'GET', redirect: 'manual', body: request.body,
            headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '), ...(request.body && { 'content-type': 'application/x-www-form-urlencoded' }) },
          });
          for (const c of res.headers.getSetCookie()) {
            const [pair] = c.split(';');
            const [k, v] = pair!.split('=');
            jar.set(k!, v ?? '');
          }
          html = await res.text();
          next = res.status >= 300 && res.status < 400 ? res.headers.get('location') ?? undefined : undefined;
          request = {};
        }
        return html;
      };
      const fields = (html: string) => Object.fromEntries([...html.matchAll(/name="(\w+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      const action = (html: string) => /action="([^"]+)"/.exec(html)![1]!;

      // The verification link auto-posts the code; the provider asks to confirm it; then sign-in, then consent.
      let page = await browse(codes.verification_uri_complete);
      page = await browse(action(page), { method: 'POST', body: new URLSearchParams(fields(page)) });
      page = await browse(action(page), { method: 'POST', body: new URLSearchParams(fields(page)) });
      page = await browse(action(page), { method: 'POST', body: new URLSearchParams({ prompt: 'login', login, password: 'any' }) });
      page = await browse(action(page), { method: 'POST', body: new URLSearchParams({ prompt: 'consent' }) });

      // The device, polling.
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${issuer}/token`, {
          method: 'POST', ...form({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: codes.device_code, client_id: clientId }),
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        });
        const body = (await res.json()) as { access_token?: string; error?: string };
        if (body.access_token !== undefined) return body.access_token;
        if (body.error !== 'authorization_pending' && body.error !== 'slow_down') throw new Error(`device flow failed: ${JSON.stringify(body)}; last page: ${page.slice(0, 300)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('device flow: no token');
    },
    rotate() {
      // oidc-provider signs with the first key of its set.
      keys = [esKey(`idp-key-${keys.length + 1}`), ...keys];
      build();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
