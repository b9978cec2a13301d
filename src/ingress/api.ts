import { readFileSync } from 'node:fs';
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { basicUserPassword } from '../auth/credentials.ts';
import { fail, GatewayError, kErrors, type Failure } from '../errors.ts';
import { toChannelJson, toClientJson, toDomainJson } from '../registry/service.ts';
import { readBody } from './body.ts';
import type { IngressContext } from './context.ts';
import { writeFailure, writeJson } from './respond.ts';

const kVersion: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
const kMaxApiBody = 64 * 1024;

interface ApiRequest {
  readonly params: readonly string[];
  readonly query: URLSearchParams;
  readonly body: unknown;
}

interface ApiReply {
  readonly status: number;
  readonly body?: unknown;
}

type Method = 'get' | 'post' | 'patch' | 'del';

interface Route {
  readonly method: Method;
  readonly pattern: string;
  /** read and parse a JSON body */
  readonly body: boolean;
  readonly handle: (req: ApiRequest) => Promise<ApiReply>;
}

const created = (body: unknown): ApiReply => ({ status: 201, body });
const okReply = (body: unknown): ApiReply => ({ status: 200, body });
const kNoContent: ApiReply = { status: 204 };

/** `?offset=&limit=` over a list, as Magistrala's list endpoints take them. */
function page<T, J>(items: T[], query: URLSearchParams, key: string, toJson: (item: T) => J) {
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);
  const limit = Math.min(1000, Math.max(1, Number(query.get('limit') ?? 100) || 100));
  return { total: items.length, offset, limit, [key]: items.slice(offset, offset + limit).map(toJson) };
}

/**
 * The REST API of DESIGN.md §9 (provisioning, admin only) plus /health and /metrics. Until user tokens land, the
 * admin authenticates with HTTP Basic: the FLEETGATE_ADMIN_EMAIL and FLEETGATE_ADMIN_PASSWORD of the admin user.
 */
export function mountApi(app: TemplatedApp, ctx: IngressContext, listeners: () => Record<string, unknown>): void {
  const { provisioning: p, logger, metrics } = ctx;
  const startedAt = Date.now();

  const routes: Route[] = [
    { method: 'post', pattern: '/domains', body: true, handle: async (r) => created(toDomainJson(await p.createDomain(r.body as never))) },
    { method: 'get', pattern: '/domains', body: false, handle: async (r) => okReply(page(await p.listDomains(), r.query, 'domains', toDomainJson)) },
    {
      method: 'post', pattern: '/:domain/clients', body: true, handle: async (r) => {
        const { client, secret } = await p.createClient(r.params[0]!, r.body as never);
        return created({ ...toClientJson(client), secret });
      },
    },
    { method: 'get', pattern: '/:domain/clients', body: false, handle: async (r) => okReply(page(await p.listClients(r.params[0]!), r.query, 'clients', toClientJson)) },
    { method: 'get', pattern: '/:domain/clients/:id', body: false, handle: async (r) => okReply(toClientJson(await p.getClient(r.params[0]!, r.params[1]!))) },
    {
      method: 'patch', pattern: '/:domain/clients/:id/secret', body: true, handle: async (r) => {
        const { client, secret } = await p.setClientSecret(r.params[0]!, r.params[1]!, r.body);
        return okReply({ ...toClientJson(client), secret });
      },
    },
    { method: 'post', pattern: '/:domain/clients/:id/disable', body: false, handle: async (r) => okReply(toClientJson(await p.setClientStatus(r.params[0]!, r.params[1]!, 'disabled'))) },
    { method: 'post', pattern: '/:domain/clients/:id/enable', body: false, handle: async (r) => okReply(toClientJson(await p.setClientStatus(r.params[0]!, r.params[1]!, 'enabled'))) },
    { method: 'del', pattern: '/:domain/clients/:id', body: false, handle: async (r) => (await p.deleteClient(r.params[0]!, r.params[1]!), kNoContent) },
    { method: 'post', pattern: '/:domain/channels', body: true, handle: async (r) => created(toChannelJson(await p.createChannel(r.params[0]!, r.body as never))) },
    { method: 'get', pattern: '/:domain/channels', body: false, handle: async (r) => okReply(page(await p.listChannels(r.params[0]!), r.query, 'channels', toChannelJson)) },
    { method: 'del', pattern: '/:domain/channels/:id', body: false, handle: async (r) => (await p.deleteChannel(r.params[0]!, r.params[1]!), kNoContent) },
    { method: 'post', pattern: '/:domain/channels/connect', body: true, handle: async (r) => created({ connected: await p.connect(r.params[0]!, r.body as never) }) },
    { method: 'post', pattern: '/:domain/channels/disconnect', body: true, handle: async (r) => okReply({ disconnected: await p.disconnect(r.params[0]!, r.body as never) }) },
  ];

  const authenticateAdmin = async (authorization: string): Promise<Failure | undefined> => {
    const basic = basicUserPassword(authorization);
    if (basic === undefined) return fail(authorization ? 'FG_ERR_AUTHN_INVALID' : 'FG_ERR_AUTHN_MISSING', 'admin Basic credentials required');
    if (!(await p.verifyAdmin(basic.user, basic.password))) {
      logger.warn({ transport: 'http', code: 'FG_ERR_AUTHN_INVALID' }, 'admin authentication failed');
      return fail('FG_ERR_AUTHN_INVALID');
    }
    return undefined;
  };

  for (const route of routes) {
    const paramCount = route.pattern.split('/').filter((s) => s.startsWith(':')).length;
    app[route.method](route.pattern, (res: HttpResponse, req: HttpRequest) => {
      const params = Array.from({ length: paramCount }, (_, i) => req.getParameter(i) ?? '');
      const query = new URLSearchParams(req.getQuery() ?? '');
      const authorization = req.getHeader('authorization');
      let aborted = false;
      const settle = ctx.inflight.begin();
      res.onAborted(() => {
        aborted = true;
        settle();
      });

      const run = async (body: unknown): Promise<void> => {
        let reply: ApiReply | Failure;
        try {
          reply = ctx.closing() ? fail('FG_ERR_SHUTTING_DOWN') : ((await authenticateAdmin(authorization)) ?? (await route.handle({ params, query, body })));
        } catch (err) {
          if (err instanceof GatewayError) reply = err.toFailure();
          else {
            logger.error({ err, route: route.pattern }, 'request failed');
            reply = fail('FG_ERR_INTERNAL');
          }
        }
        settle();
        metrics.apiRequest(route.pattern, 'ok' in reply ? kErrors[reply.code].status : reply.status);
        if (aborted) return;
        res.cork(() => ('ok' in reply ? writeFailure(res, reply, 'Basic') : writeJson(res, reply.status, reply.body)));
      };

      if (!route.body) return void run(undefined);
      readBody(res, kMaxApiBody, (body) => {
        if (!body.ok) {
          settle();
          return writeFailure(res, body);
        }
        // Parsed here, synchronously: the body view is only valid inside this callback.
        const json = parseJson(body.value);
        if (json instanceof GatewayError) {
          settle();
          return writeFailure(res, json.toFailure());
        }
        void run(json);
      });
    });
  }

  app.get('/health', (res) => {
    writeJson(res, ctx.closing() ? 503 : 200, {
      status: ctx.closing() ? 'shutting_down' : 'ok',
      version: kVersion,
      uptime: Math.round((Date.now() - startedAt) / 1000),
      listeners: listeners(),
    });
  });

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
