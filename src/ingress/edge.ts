import type { HttpRequest, HttpResponse, RecognizedString, TemplatedApp, us_socket_context_t, WebSocketBehavior } from 'uWebSockets.js';
import { fail, type Failure } from '../errors.ts';
import { corsPolicy } from './cors.ts';
import type { TrustedProxies } from './proxy-protocol.ts';
import { writeFailure } from './respond.ts';

type Handler = (res: HttpResponse, req: HttpRequest) => void | Promise<void>;
type Upgrade = (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => void | Promise<void>;
type Headers = readonly (readonly [string, string])[];

const kRouteMethods = { get: 'GET', post: 'POST', put: 'PUT', patch: 'PATCH', del: 'DELETE' } as const;
type RouteMethod = keyof typeof kRouteMethods;
// RFC 9110 §8.6: 1*DIGIT, with optional whitespace around it.
const kContentLength = /^[ \t]*[0-9]+[ \t]*$/;

/**
 * The HTTP edge (docs/HTTP.md): the uWS app as every route sees it. Each handler registered on it first passes the
 * checks here, so no route can forget them:
 * - request framing (RFC 9112 §6.3): several Content-Length, a non-numeric one, Transfer-Encoding with
 *   Content-Length or not ending in chunked -> 400, another transfer coding -> 501; then the connection is closed;
 * - CORS (FLEETGATE_CORS_ORIGINS): allowed origins get their headers on every response, preflights are answered;
 * - methods: HEAD wherever GET is (same headers, no body), OPTIONS on every path (204 + Allow), and any other method
 *   on a known path -> 405 + Allow.
 * - a PROXY v2 header (which this uWS build reads on every listener) from a peer that is not a trusted proxy
 *   (FLEETGATE_TRUSTED_PROXIES) -> 403 and close: nobody may claim another address;
 * WebSocket upgrades pass these checks too.
 */
export function guardRoutes(app: TemplatedApp, corsOrigins: readonly string[], trusted: TrustedProxies): TemplatedApp {
  const cors = corsPolicy(corsOrigins);
  const methods = new Map<string, Set<string>>();
  const allowOf = (pattern: string) => [...methods.get(pattern)!, 'OPTIONS'].join(', ');

  // uWS goes on parsing what is already buffered after a handler answers, even with "close": a request smuggled
  // behind a refused one would be handled before the connection closes. It comes from the same peer in the same
  // synchronous parse pass, so until the event loop moves on (setImmediate) a request from that peer is refused too;
  // each refusal closes, so the connection ends once the pass is over. (Two peers behind one address parsed in the
  // same loop turn is the price: the innocent one gets a 400 it can retry.)
  // Keyed by the device's address when a trusted proxy named it: the proxy's own is shared by everyone behind it.
  let refusedPeer: Buffer | undefined;
  const peerOf = (res: HttpResponse) => {
    const proxied = res.getProxiedRemoteAddress();
    return Buffer.copyBytesFrom(new Uint8Array(proxied.byteLength > 0 ? proxied : res.getRemoteAddress()));
  };
  const refuse = (res: HttpResponse, failure: Failure): void => {
    const peer = peerOf(res);
    writeFailure(res, failure);
    if (refusedPeer === undefined) setImmediate(() => (refusedPeer = undefined));
    refusedPeer = peer;
  };
  const problem = (res: HttpResponse, req: HttpRequest): Failure | undefined =>
    proxyProblem(res, trusted) ?? framingProblem(req) ?? (refusedPeer !== undefined && refusedPeer.equals(peerOf(res))
      ? fail('FG_ERR_REQUEST_FRAMING', 'request pipelined behind a malformed one')
      : undefined);

  const guard = (handler: Handler): Handler => (res, req) => {
    const refusal = problem(res, req);
    if (refusal !== undefined) return refuse(res, refusal);
    const origin = req.getHeader('origin');
    const granted = origin === '' ? undefined : cors.grant(origin);
    return handler(granted === undefined ? res : reshape(res, granted, false), req);
  };
  const guardUpgrade = (upgrade: Upgrade): Upgrade => (res, req, context) => {
    const refusal = problem(res, req);
    return refusal === undefined ? upgrade(res, req, context) : refuse(res, refusal);
  };

  /** The first time a path pattern is seen: its OPTIONS answer and its 405 for every method it does not have. */
  const declare = (target: TemplatedApp, pattern: string, method: string): void => {
    const known = methods.get(pattern);
    if (known !== undefined) return void known.add(method);
    methods.set(pattern, new Set([method]));
    target.options(pattern, guard((res, req) => {
      const allow = allowOf(pattern);
      const origin = req.getHeader('origin');
      // A CORS preflight (Fetch standard): OPTIONS with Origin and Access-Control-Request-Method.
      const preflight = origin !== '' && req.getHeader('access-control-request-method') !== '' && cors.grant(origin) !== undefined;
      res.writeStatus('204 No Content').writeHeader('allow', allow);
      if (preflight) for (const [key, value] of cors.preflight(allow)) res.writeHeader(key, value);
      res.endWithoutBody();
    }));
    // uWS tries a path's own method before `any`, so this answers only the methods the path lacks.
    target.any(pattern, guard((res) => writeFailure(res, fail('FG_ERR_METHOD_NOT_ALLOWED'), 'Client', allowOf(pattern))));
  };

  const guarded: TemplatedApp = new Proxy(app, {
    get(target, key) {
      if (typeof key === 'string' && key in kRouteMethods) {
        const name = key as RouteMethod;
        return (pattern: string, handler: Handler) => {
          declare(target, pattern, kRouteMethods[name]);
          target[name](pattern, guard(handler));
          if (name === 'get') {
            methods.get(pattern)!.add('HEAD');
            target.head(pattern, guard((res, req) => handler(reshape(res, [], true), req)));
          }
          return guarded;
        };
      }
      if (key === 'any') {
        return (pattern: string, handler: Handler) => (target.any(pattern, guard(handler)), guarded);
      }
      if (key === 'ws') {
        return (pattern: string, behavior: WebSocketBehavior<unknown>) => {
          declare(target, pattern, 'GET');
          target.ws(pattern, behavior.upgrade === undefined ? behavior : { ...behavior, upgrade: guardUpgrade(behavior.upgrade) });
          return guarded;
        };
      }
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return guarded;
}

// What framingProblem's header walk saw. Module state and one callback made once: no closure per request, since
// every request on every route walks its headers here.
let lengths = 0;
let length = '';
let codings: string | undefined;
const countFramingHeader = (key: string, value: string): void => {
  if (key === 'content-length') {
    lengths++;
    length = value;
  } else if (key === 'transfer-encoding') codings = codings === undefined ? value : `${codings},${value}`;
};

/** RFC 9112 §6.3: a request whose body length two parsers could read differently is refused, never guessed at. */
function framingProblem(req: HttpRequest): Failure | undefined {
  lengths = 0;
  codings = undefined;
  req.forEach(countFramingHeader);
  // (read through a cast: TypeScript does not see the callback assign it)
  const te = codings as string | undefined;
  if (lengths > 1) return fail('FG_ERR_REQUEST_FRAMING', 'more than one Content-Length header');
  if (lengths === 1 && !kContentLength.test(length)) return fail('FG_ERR_REQUEST_FRAMING', 'Content-Length is not a number');
  if (te === undefined) return undefined;
  // (this uWS build already closes such a connection itself, unanswered: the check stays for the next one)
  if (lengths === 1) return fail('FG_ERR_REQUEST_FRAMING', 'Transfer-Encoding together with Content-Length');
  const list = te.toLowerCase().split(',').map((c) => c.trim());
  if (list.at(-1) !== 'chunked') return fail('FG_ERR_REQUEST_FRAMING', 'chunked must be the final transfer coding');
  if (list.length > 1) return fail('FG_ERR_TRANSFER_CODING', `only the chunked transfer coding is supported, not "${te}"`);
  return undefined;
}

/**
 * The response a handler writes, with `headers` added right after its status line (uWS writes the status first, and
 * a handler may set it late) and, for HEAD, the body left out while its length is still announced (RFC 9110 §9.3.2).
 * Only CORS requests and HEAD get one: the hot path (a device's POST, no Origin) keeps the bare response.
 */
function reshape(res: HttpResponse, headers: Headers, head: boolean): HttpResponse {
  let pending = headers.length > 0;
  const flush = (): void => {
    if (!pending) return;
    pending = false;
    for (const [key, value] of headers) res.writeHeader(key, value);
  };
  const endHead = (body?: RecognizedString, close?: boolean): HttpResponse => {
    flush();
    res.writeHeader('content-length', String(byteLength(body)));
    if (close === true) res.endWithoutBody(undefined, true);
    else res.endWithoutBody();
    return proxy;
  };
  const proxy: HttpResponse = new Proxy(res, {
    get(target, key) {
      if (key === 'writeStatus') {
        return (status: RecognizedString) => {
          target.writeStatus(status);
          flush();
          return proxy;
        };
      }
      if (key === 'end' && head) return endHead;
      const value: unknown = Reflect.get(target, key);
      if (typeof value !== 'function') return value;
      // Anything that writes before writeStatus makes uWS write "200 OK" first: the headers follow it.
      const writes = key === 'writeHeader' || key === 'write' || key === 'end' || key === 'tryEnd' || key === 'endWithoutBody';
      return (...args: unknown[]) => {
        if (writes) flush();
        const out: unknown = value.apply(target, args);
        return out === target ? proxy : out;
      };
    },
  });
  return proxy;
}

function byteLength(body: RecognizedString | undefined): number {
  if (body === undefined) return 0;
  return typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
}

/** A PROXY header from a network peer that is not a trusted proxy (the terminator's unix socket is fleetgate's own). */
function proxyProblem(res: HttpResponse, trusted: TrustedProxies): Failure | undefined {
  if (res.getProxiedRemoteAddress().byteLength === 0) return undefined;
  const peer = res.getRemoteAddressAsText();
  if (peer.byteLength === 0 || trusted(Buffer.from(peer).toString('latin1'))) return undefined;
  return fail('FG_ERR_PROXY_UNTRUSTED');
}
