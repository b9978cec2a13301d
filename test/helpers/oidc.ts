import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';

export interface TestIdp {
  readonly issuer: string;
  /** a client-credentials access token (a JWT) for one of the provider's clients */
  token(clientId: string): Promise<string>;
  /** replaces the provider's signing key (the old one stays published), as a key rotation at the IdP would */
  rotate(): void;
  close(): Promise<void>;
}

export interface IdpClient {
  readonly client_id: string;
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
      clients: clients.map((c) => ({ client_id: c.client_id, client_secret: `${c.client_id}-secret`, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], id_token_signed_response_alg: 'ES256' })),
      jwks: { keys: keys as never },
      features: {
        devInteractions: { enabled: false },
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
    rotate() {
      // oidc-provider signs with the first key of its set.
      keys = [esKey(`idp-key-${keys.length + 1}`), ...keys];
      build();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
