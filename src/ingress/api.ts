import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { AuditCredential } from '../audit.ts';
import { credentialFromAuthorization } from '../auth/credentials.ts';
import { fail, GatewayError, kErrors, type Failure } from '../errors.ts';
import { toChannelJson, toClientJson, toConnectionJson, toDomainJson } from '../registry/service.ts';
import type { UserPrincipal } from '../types.ts';
import { toSessionJson, toUserJson } from '../users/service.ts';
import { kVersion } from '../version.ts';
import { readBody } from './body.ts';
import { cookieValue } from './cookies.ts';
import { mountResetForm } from './reset-form.ts';
import { corsPolicy } from './cors.ts';
import type { IngressContext } from './context.ts';
import { remoteAddress } from './remote.ts';
import { writeFailure, writeJson } from './respond.ts';

const kMaxApiBody = 64 * 1024;

interface ApiRequest {
  readonly params: readonly string[];
  readonly query: URLSearchParams;
  readonly body: unknown;
  /** the caller, for `user` and `admin` routes */
  readonly principal: UserPrincipal | undefined;
  /** the raw `Bearer` token, for routes that take a refresh or recovery token */
  readonly bearer: string;
  /** the caller's address, for the failure limits of sign-in */
  readonly address: string;
}

interface ApiReply {
  readonly status: number;
  readonly body?: unknown;
}

type Method = 'get' | 'post' | 'put' | 'patch' | 'del';

interface Route {
  readonly method: Method;
  readonly pattern: string;
  /** public: no access token; user: any user's access token; admin: an admin's access token */
  readonly auth: 'public' | 'user' | 'admin';
  /** read and parse a JSON body */
  readonly body: boolean;
  readonly handle: (req: ApiRequest) => Promise<ApiReply>;
}

const created = (body: unknown): ApiReply => ({ status: 201, body });
const okReply = (body: unknown): ApiReply => ({ status: 200, body });
const kNoContent: ApiReply = { status: 204 };

/** Public routes that authenticate with what they are sent, by method and pattern: audited as authentications. */
const kCredentialRoutes: Readonly<Record<string, AuditCredential>> = {
  'post /users/tokens/issue': 'password', 'post /users/tokens/refresh': 'refresh', 'put /password/reset': 'recovery',
};

/** The login a sign-in names (never its password), for the audit. */
function loginOf(body: unknown): string | undefined {
  const { email, username } = (body ?? {}) as { email?: unknown; username?: unknown };
  const login = typeof email === 'string' ? email : username;
  return typeof login === 'string' ? login.slice(0, 256) : undefined;
}

/** `?offset=&limit=` over a list, as Magistrala's list endpoints take them. */
function page<T, J>(items: T[], query: URLSearchParams, key: string, toJson: (item: T) => J) {
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);
  const limit = Math.min(1000, Math.max(1, Number(query.get('limit') ?? 100) || 100));
  return { total: items.length, offset, limit, [key]: items.slice(offset, offset + limit).map(toJson) };
}

/** The token of a `Bearer` credential (credentials.ts reads the header), or "" when there is none. */
function bearerOf(authorization: string): string {
  const credential = credentialFromAuthorization(authorization);
  return credential?.kind === 'bearer' ? credential.token : '';
}

/**
 * The REST API: provisioning (DESIGN.md §9, admin), users and tokens (§8), JWKS, /health and /metrics. Admin and user
 * routes take `Authorization: Bearer <access token>` from `POST /users/tokens/issue`.
 */
export function mountApi(app: TemplatedApp, ctx: IngressContext, listeners: () => Record<string, unknown>): void {
  const { provisioning: p, users, auth, keys, logger, metrics, config } = ctx;
  const startedAt = Date.now();
  const domain = (r: ApiRequest) => r.params[0]!;

  const routes: Route[] = [
    // Provisioning
    { method: 'post', pattern: '/domains', auth: 'admin', body: true, handle: async (r) => created(toDomainJson(await p.createDomain(r.body as never))) },
    { method: 'get', pattern: '/domains', auth: 'admin', body: false, handle: async (r) => okReply(page(await p.listDomains(), r.query, 'domains', toDomainJson)) },
    // With its clients, channels and connections; its clients' live connections are closed.
    { method: 'del', pattern: '/domains/:domain', auth: 'admin', body: false, handle: async (r) => (await p.deleteDomain(domain(r)), kNoContent) },
    {
      method: 'post', pattern: '/:domain/clients', auth: 'admin', body: true, handle: async (r) => {
        const { client, secret } = await p.createClient(domain(r), r.body as never);
        return created({ ...toClientJson(client), secret });
      },
    },
    { method: 'get', pattern: '/:domain/clients', auth: 'admin', body: false, handle: async (r) => okReply(page(await p.listClients(domain(r)), r.query, 'clients', toClientJson)) },
    { method: 'get', pattern: '/:domain/clients/:id', auth: 'admin', body: false, handle: async (r) => okReply(toClientJson(await p.getClient(domain(r), r.params[1]!))) },
    {
      method: 'patch', pattern: '/:domain/clients/:id/secret', auth: 'admin', body: true, handle: async (r) => {
        const { client, secret } = await p.setClientSecret(domain(r), r.params[1]!, r.body);
        return okReply({ ...toClientJson(client), secret });
      },
    },
    { method: 'post', pattern: '/:domain/clients/:id/disable', auth: 'admin', body: false, handle: async (r) => okReply(toClientJson(await p.setClientStatus(domain(r), r.params[1]!, 'disabled'))) },
    { method: 'post', pattern: '/:domain/clients/:id/enable', auth: 'admin', body: false, handle: async (r) => okReply(toClientJson(await p.setClientStatus(domain(r), r.params[1]!, 'enabled'))) },
    { method: 'del', pattern: '/:domain/clients/:id', auth: 'admin', body: false, handle: async (r) => (await p.deleteClient(domain(r), r.params[1]!), kNoContent) },
    { method: 'post', pattern: '/:domain/channels', auth: 'admin', body: true, handle: async (r) => created(toChannelJson(await p.createChannel(domain(r), r.body as never))) },
    { method: 'get', pattern: '/:domain/channels', auth: 'admin', body: false, handle: async (r) => okReply(page(await p.listChannels(domain(r)), r.query, 'channels', toChannelJson)) },
    { method: 'del', pattern: '/:domain/channels/:id', auth: 'admin', body: false, handle: async (r) => (await p.deleteChannel(domain(r), r.params[1]!), kNoContent) },
    {
      method: 'get', pattern: '/:domain/connections', auth: 'admin', body: false, handle: async (r) => {
        const filter = { client: r.query.get('client_id') ?? undefined, channel: r.query.get('channel_id') ?? undefined };
        return okReply(page(await p.listConnections(domain(r), filter), r.query, 'connections', toConnectionJson));
      },
    },
    { method: 'post', pattern: '/:domain/channels/connect', auth: 'admin', body: true, handle: async (r) => created({ connected: await p.connect(domain(r), r.body as never) }) },
    { method: 'post', pattern: '/:domain/channels/disconnect', auth: 'admin', body: true, handle: async (r) => okReply({ disconnected: await p.disconnect(domain(r), r.body as never) }) },
    { method: 'post', pattern: '/:domain/users/assign', auth: 'admin', body: true, handle: async (r) => okReply({ assigned: await p.assignUsers(domain(r), r.body) }) },
    { method: 'post', pattern: '/:domain/users/unassign', auth: 'admin', body: true, handle: async (r) => okReply({ unassigned: await p.unassignUsers(domain(r), r.body) }) },
    // Users and tokens
    {
      method: 'post', pattern: '/users', auth: config.selfRegistration ? 'public' : 'admin', body: true, handle: async (r) => {
        const user = await users.register(r.body);
        ctx.audit.change({ op: 'user.create', ids: { user_id: user.id } });
        return created(toUserJson(user));
      },
    },
    { method: 'get', pattern: '/users/profile', auth: 'user', body: false, handle: async (r) => okReply(toUserJson(ctx.users.profile(r.principal!))) },
    { method: 'post', pattern: '/users/tokens/issue', auth: 'public', body: true, handle: async (r) => created(await users.issue(r.body, r.address)) },
    { method: 'post', pattern: '/users/tokens/refresh', auth: 'public', body: false, handle: async (r) => created(await users.refresh(r.bearer)) },
    { method: 'get', pattern: '/users/tokens/refresh', auth: 'user', body: false, handle: async (r) => okReply({ sessions: (await users.sessions(r.principal!)).map(toSessionJson) }) },
    { method: 'post', pattern: '/users/tokens/revoke', auth: 'user', body: true, handle: async (r) => (await users.revoke(r.principal!, r.body), kNoContent) },
    { method: 'post', pattern: '/password/reset-request', auth: 'public', body: true, handle: async (r) => (await users.requestReset(r.body), created(undefined)) },
    { method: 'put', pattern: '/password/reset', auth: 'public', body: true, handle: async (r) => (await users.reset(r.bearer, r.body), created(undefined)) },
    { method: 'get', pattern: '/keys/.well-known/jwks.json', auth: 'public', body: false, handle: async () => okReply(keys.jwks()) },
  ];

  /** The caller of a `user` or `admin` route, from its access token. */
  // Audited: refusals, and tokens verified by the workers (a cache hit reuses that decision).
  const caller = async (authorization: string, need: 'user' | 'admin', remote: string, route: string): Promise<UserPrincipal | Failure> => {
    const credential = credentialFromAuthorization(authorization);
    const site = { protocol: 'api', remote, credential: credential?.kind ?? 'none' } as const;
    const refuse = (failure: Failure): Failure => {
      metrics.authenticated('api', failure.code);
      ctx.audit.authn({ ...site, result: failure });
      return failure;
    };
    if (credential === undefined) return refuse(fail('FG_ERR_AUTHN_MISSING', 'Bearer access token required'));
    if (credential.kind !== 'bearer') return refuse(fail('FG_ERR_AUTHN_INVALID', 'Bearer access token required'));
    const checked = auth.authenticate(credential);
    const principal = await checked;
    if (!principal.ok) return refuse(principal);
    if (principal.value.kind !== 'user') return refuse(fail('FG_ERR_AUTHN_INVALID', 'a user access token is required'));
    const user = { kind: 'user', id: principal.value.id } as const;
    metrics.authenticated('api', 'ok');
    if (checked instanceof Promise) ctx.audit.authn({ ...site, ...user, result: 'ok' });
    if (need === 'admin' && !ctx.view.isAdmin(principal.value.id)) {
      const failure = fail('FG_ERR_AUTHZ_FORBIDDEN', 'admin only');
      ctx.audit.authz({ protocol: 'api', remote, ...user, action: 'admin', target: route, failure });
      return failure;
    }
    return principal.value;
  };

  const uiOrigin = new URL(config.oauthUiRedirectUrl).origin;
  const cors = corsPolicy(config.corsOrigins);
  /**
   * After a browser sign-in the access token is the `access_token` cookie. A cross-site page must not ride on it: a
   * request that changes something and names another origin (browsers always send Origin there) gets no credential,
   * unless that origin is listed in FLEETGATE_CORS_ORIGINS (trusted with credentials; `*` is not).
   */
  const cookieAuthorization = (req: HttpRequest, method: Method): string => {
    const token = cookieValue(req.getHeader('cookie'), 'access_token');
    if (token === '') return '';
    const origin = req.getHeader('origin');
    if (method !== 'get' && origin !== '' && origin !== uiOrigin && !cors.listed(origin) && !(URL.canParse(origin) && new URL(origin).host === req.getHeader('host'))) return '';
    return `Bearer ${token}`;
  };

  for (const route of routes) {
    const paramCount = route.pattern.split('/').filter((s) => s.startsWith(':')).length;
    const credentialKind = kCredentialRoutes[`${route.method} ${route.pattern}`];
    app[route.method](route.pattern, (res: HttpResponse, req: HttpRequest) => {
      const params = Array.from({ length: paramCount }, (_, i) => req.getParameter(i) ?? '');
      const query = new URLSearchParams(req.getQuery() ?? '');
      const authorization = req.getHeader('authorization') || cookieAuthorization(req, route.method);
      const remote = remoteAddress(res, ctx.peers);
      let aborted = false;
      const settle = ctx.inflight.begin();
      res.onAborted(() => {
        aborted = true;
        settle();
      });

      const run = async (body: unknown): Promise<void> => {
        let reply: ApiReply | Failure;
        try {
          if (ctx.closing()) reply = fail('FG_ERR_SHUTTING_DOWN');
          else {
            const principal = route.auth === 'public' ? undefined : await caller(authorization, route.auth, remote, `${route.method === 'del' ? 'DELETE' : route.method.toUpperCase()} ${route.pattern}`);
            // The registry's changes name their actor: the caller.
            reply = principal !== undefined && 'ok' in principal
              ? principal
              : await ctx.audit.as(principal?.id ?? 'anonymous', () => route.handle({ params, query, body, principal, bearer: bearerOf(authorization), address: remote }));
          }
        } catch (err) {
          if (err instanceof GatewayError) reply = err.toFailure();
          else {
            logger.error({ err, route: route.pattern }, 'request failed');
            reply = fail('FG_ERR_INTERNAL');
          }
        }
        settle();
        if (credentialKind !== undefined) {
          const login = credentialKind === 'password' ? loginOf(body) : undefined;
          ctx.audit.authn({ protocol: 'api', remote, credential: credentialKind, ...(login && { username: login }), result: 'ok' in reply ? reply : 'ok' });
        }
        metrics.apiRequest(route.pattern, 'ok' in reply ? kErrors[reply.code].status : reply.status);
        if (aborted) return;
        res.cork(() => ('ok' in reply ? writeFailure(res, reply, 'Bearer') : writeJson(res, reply.status, reply.body)));
      };

      if (!route.body) return void run(undefined);
      readBody(res, kMaxApiBody, (body) => {
        // Parsed here, synchronously: the body view is only valid inside this callback.
        const json = body.ok ? parseJson(body.value) : new GatewayError(body.code, body.message);
        if (json instanceof GatewayError) {
          settle();
          return writeFailure(res, json.toFailure());
        }
        void run(json);
      });
    });
  }

  mountResetForm(app, ctx);

  // Liveness: 200 while the process serves, "degraded" when a shared service is down (local delivery goes on).
  // Readiness (/health/ready): 503 while shutting down or while a shared service is down, for a load balancer.
  const health = (ready: boolean) => (res: HttpResponse) => {
    const dependencies = ctx.dependencies();
    const degraded = Object.values(dependencies).includes('down');
    const status = ctx.closing() ? 'shutting_down' : degraded ? 'degraded' : 'ok';
    writeJson(res, ctx.closing() || (ready && degraded) ? 503 : 200, {
      status,
      version: kVersion,
      uptime: Math.round((Date.now() - startedAt) / 1000),
      listeners: listeners(),
      dependencies,
    });
  };
  app.get('/health', health(false));
  app.get('/health/live', health(false));
  app.get('/health/ready', health(true));

  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    void metrics.registry.metrics().then((text) => {
      if (!aborted) res.cork(() => res.writeHeader('content-type', metrics.registry.contentType).end(text));
    });
  });
}

function parseJson(bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) return undefined;
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    return new GatewayError('FG_ERR_REQUEST_INVALID', 'body is not valid JSON');
  }
}
