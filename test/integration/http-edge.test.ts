import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, WsClient } from '../helpers/clients.ts';
import { startGateway, startWithListener, type provisionFleet, type TestClient, type TestGateway } from '../helpers/gateway.ts';

const kAdmin = { email: 'admin@edge.example', password: 'edge-admin-password' };
const kListed = 'https://app.example';
let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let listener: WsClient;

let setup: Awaited<ReturnType<typeof startWithListener>>;
beforeAll(async () => {
  ({ gw, fleet, device, listener } = setup = await startWithListener({ maxPayload: 4096, adminEmail: kAdmin.email, adminPassword: kAdmin.password, corsOrigins: kListed }, { format: 'raw' }));
});
afterAll(() => setup.close());

interface RawReply {
  /** every byte the server sent */
  readonly text: string;
  /** true when the server closed the connection (false: still open when `waitMs` ran out, then we closed it) */
  readonly closed: boolean;
}

/** Sends exactly these bytes on a new connection; resolves with what came back once the server closes, or after waitMs. */
function raw(bytes: string | Buffer, waitMs = 3000): Promise<RawReply> {
  return new Promise((resolve) => {
    const url = new URL(gw.http);
    const socket = connect(Number(url.port), url.hostname);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false });
    }, waitMs);
    socket.on('data', (d) => (text += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    socket.write(bytes);
  });
}

/** The status lines in a raw reply, in order. */
const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
const publishPath = () => `/http/${fleet.topic}`;
const auth = () => `Authorization: Client ${device.secret}\r\n`;
/** A complete publish request, to hide behind another one. */
const smuggled = () => `POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/octet-stream\r\nContent-Length: 8\r\n\r\nSMUGGLED`;

async function expectNothingPublished(): Promise<void> {
  expect((await listener.drain(200)).map(String)).toEqual([]);
}

describe('HTTP edge: request framing (RFC 9112 §6.3)', () => {
  it('a publish with two different Content-Length headers gets 400 and a close; the request hidden in its body is never published', async () => {
    const body = 'hello';
    const reply = await raw(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: ${body.length}\r\nContent-Length: 200\r\n\r\n${body}${smuggled()}`);
    expect(reply.closed).toBe(true);
    expect(statuses(reply.text)[0]).toBe(400);
    expect(reply.text).toContain('FG_ERR_REQUEST_FRAMING');
    expect(statuses(reply.text)).not.toContain(202);
    await expectNothingPublished();
  });

  it('two equal Content-Length headers are refused as well (as nginx does)', async () => {
    const reply = await raw(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`);
    expect(reply).toMatchObject({ closed: true });
    expect(statuses(reply.text)).toEqual([400]);
    await expectNothingPublished();
  });

  it('an empty Content-Length is 400, not a zero-length body followed by a request made of the body', async () => {
    const reply = await raw(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: \r\n\r\n${smuggled()}`);
    expect(reply.closed).toBe(true);
    expect(statuses(reply.text)[0]).toBe(400);
    expect(statuses(reply.text)).not.toContain(202);
    await expectNothingPublished();
  });

  it.each([
    ['gzip', 400, 'FG_ERR_REQUEST_FRAMING'],
    ['xchunked', 400, 'FG_ERR_REQUEST_FRAMING'],
    ['chunked, gzip', 400, 'FG_ERR_REQUEST_FRAMING'],
    ['gzip, chunked', 501, 'FG_ERR_TRANSFER_CODING'],
  ])('Transfer-Encoding: %s gets %i and a close (uWS would read any of them as chunked)', async (coding, status, code) => {
    const reply = await raw(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: ${coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggled()}`);
    expect(reply.closed).toBe(true);
    expect(statuses(reply.text)[0]).toBe(status);
    expect(reply.text).toContain(code);
    expect(statuses(reply.text)).not.toContain(202);
    await expectNothingPublished();
  });

  it('Transfer-Encoding with Content-Length: uWS closes the connection itself, unanswered, before any handler', async () => {
    const reply = await raw(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggled()}`);
    expect(reply).toEqual({ text: '', closed: true });
    await expectNothingPublished();
  });

  it('obs-fold (a header line starting with a space): uWS never hands the request over (documented limit); nothing is published', async () => {
    const reply = await raw(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}X-A: 1\r\n Content-Length: 200\r\nContent-Length: 5\r\n\r\nhello${smuggled()}`, 1000);
    expect(reply.text).toBe('');
    await expectNothingPublished();
  });

  it('the check covers every route: REST API, users/tokens, sign-out, /health, WebSocket upgrade', async () => {
    const dup = 'Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}';
    for (const head of ['POST /domains', 'POST /users/tokens/issue', 'POST /oauth/logout', 'GET /health', `GET /ws/${fleet.topic}`, 'POST /no/such/route']) {
      const reply = await raw(`${head} HTTP/1.1\r\nHost: x\r\n${dup}GET /health HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(reply.closed, head).toBe(true);
      expect(statuses(reply.text), head).toEqual([400, 400]);
    }
  });

  it('a well-framed publish on a kept-alive connection is unaffected, chunked or not', async () => {
    const reply = await raw(
      `POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 2\r\n\r\nhi`
      + `POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n2\r\nho\r\n0\r\n\r\n`, 500);
    expect(statuses(reply.text)).toEqual([202, 202]);
    expect(reply.closed).toBe(false);
    expect([String(await listener.next()), String(await listener.next())]).toEqual(['hi', 'ho']);
  });
});

describe('HTTP edge: methods', () => {
  it('HEAD /health answers like GET without the body, and the connection stays in step', async () => {
    const get = await http('GET', `${gw.http}/health`);
    const reply = await raw('HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n', 500);
    const [headPart, getPart] = reply.text.split(/(?=HTTP\/1\.1 )/);
    expect(statuses(reply.text)).toEqual([200, 200]);
    expect(headPart).toMatch(/content-length: \d+\r\n/i);
    expect(headPart!.endsWith('\r\n\r\n')).toBe(true);
    expect(JSON.parse(getPart!.split('\r\n\r\n')[1]!)).toMatchObject({ status: get.json.status });
  });

  it('OPTIONS answers 204 with Allow, on /health, a publish path and an API path', async () => {
    for (const [path, allow] of [['/health', 'GET, HEAD, OPTIONS'], [publishPath(), 'POST, OPTIONS'], ['/domains', 'POST, GET, HEAD, OPTIONS']] as const) {
      const res = await http('OPTIONS', gw.http + path);
      expect(res.status, path).toBe(204);
      expect(res.headers.allow, path).toBe(allow);
      expect(res.headers['access-control-allow-origin'], path).toBeUndefined();
    }
  });

  it('another method on a known path is 405 with Allow and FG_ERR_METHOD_NOT_ALLOWED', async () => {
    for (const [method, path, allow] of [
      ['GET', publishPath(), 'POST, OPTIONS'], ['HEAD', publishPath(), 'POST, OPTIONS'], ['PUT', publishPath(), 'POST, OPTIONS'],
      ['DELETE', '/health', 'GET, HEAD, OPTIONS'], ['PATCH', '/domains', 'POST, GET, HEAD, OPTIONS'],
    ] as const) {
      const res = await http(method, gw.http + path);
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.allow, `${method} ${path}`).toBe(allow);
      if (method !== 'HEAD') expect(res.json).toMatchObject({ code: 'FG_ERR_METHOD_NOT_ALLOWED' });
    }
    expect((await http('DELETE', `${gw.http}/no/such/route`)).status).toBe(404);
  });

  it('a method uWS does not know is closed unanswered by uWS, at once (documented limit)', async () => {
    expect(await raw('PROPFIND /health HTTP/1.1\r\nHost: x\r\n\r\n')).toEqual({ text: '', closed: true });
  });

  it('48 header lines are served; from 49 on, this uWS build never hands the request over (documented limit)', async () => {
    const headers = (n: number) => Array.from({ length: n - 1 }, (_, i) => `X-H${i}: v\r\n`).join('');
    expect(statuses((await raw(`GET /health HTTP/1.1\r\nHost: x\r\n${headers(48)}\r\n`, 500)).text)).toEqual([200]);
    expect(await raw(`GET /health HTTP/1.1\r\nHost: x\r\n${headers(49)}\r\n`, 500)).toEqual({ text: '', closed: false });
  });
});

describe('HTTP edge: a body over FLEETGATE_MAX_PAYLOAD', () => {
  const big = Buffer.alloc(8 * 1024 * 1024, 'x');
  const headers = () => ({ authorization: `Client ${device.secret}`, 'content-type': 'application/octet-stream' });

  it('undici sending it whole (Content-Length, no Expect: 100-continue) sees the 413, not EPIPE', async () => {
    const res = await request(gw.http + publishPath(), { method: 'POST', headers: headers(), body: big });
    expect(res.statusCode).toBe(413);
    expect(res.headers.connection).toBe('close');
    expect(await res.body.json()).toMatchObject({ code: 'FG_ERR_PARSE_TOO_LARGE' });
    await expectNothingPublished();
  });

  it('a client that reads only once its body is sent still gets the 413 (the server drains; it does not reset the connection)', async () => {
    const url = new URL(gw.http);
    const reply = await new Promise<{ text: string; errors: string[] }>((resolve) => {
      const socket = connect(Number(url.port), url.hostname);
      const errors: string[] = [];
      let text = '';
      socket.pause();
      socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
      socket.on('data', (d) => (text += d));
      socket.on('close', () => resolve({ text, errors }));
      socket.write(`POST ${publishPath()} HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: ${big.length}\r\n\r\n`);
      // Like a client on a slower link: the whole body goes out before it looks at the answer.
      socket.write(big, () => {
        socket.resume();
        socket.end();
      });
    });
    // Before: the server closed with 8 MB unread, the kernel answered with RST, the write failed (EPIPE) and the 413 was lost.
    expect(reply.errors).toEqual([]);
    expect(statuses(reply.text)).toEqual([413]);
    expect(reply.text).toMatch(/connection: close/i);
  });

  it('fetch sees the 413 too', async () => {
    const res = await fetch(gw.http + publishPath(), { method: 'POST', headers: headers(), body: big });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'FG_ERR_PARSE_TOO_LARGE' });
  });

  it('a chunked body that grows past the limit gets the 413', async () => {
    const chunks = Array.from({ length: 512 }, () => Buffer.alloc(16 * 1024, 'y'));
    const res = await request(gw.http + publishPath(), { method: 'POST', headers: headers(), body: Readable.from(chunks) });
    expect(res.statusCode).toBe(413);
    expect(await res.body.json()).toMatchObject({ code: 'FG_ERR_PARSE_TOO_LARGE' });
    await expectNothingPublished();
  });
});

describe('HTTP edge: CORS (FLEETGATE_CORS_ORIGINS)', () => {
  const preflight = (origin: string, path = publishPath()) => http('OPTIONS', gw.http + path, {
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });

  it('a preflight from a listed origin is answered 204 with the CORS headers', async () => {
    const res = await preflight(kListed);
    expect(res.status).toBe(204);
    expect(res.headers).toMatchObject({
      'access-control-allow-origin': kListed,
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers': 'Authorization, Content-Type',
      'access-control-max-age': '600',
      vary: 'Origin',
    });
  });

  it('an unlisted origin gets no CORS header, on the preflight or on the request (the browser blocks)', async () => {
    const res = await preflight('https://evil.example');
    expect(res.status).toBe(204);
    expect(Object.keys(res.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    const get = await http('GET', `${gw.http}/health`, { headers: { origin: 'https://evil.example' } });
    expect(Object.keys(get.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });

  it('actual responses to a listed origin carry Allow-Origin and Allow-Credentials: a publish, an error, /health', async () => {
    const origin = { origin: kListed };
    const accepted = await http('POST', gw.http + publishPath(), { headers: { ...origin, authorization: `Client ${device.secret}`, 'content-type': 'application/octet-stream' }, body: 'from a page' });
    expect(accepted.status).toBe(202);
    expect(String(await listener.next())).toBe('from a page');
    const refused = await http('POST', gw.http + publishPath(), { headers: origin, body: 'x' });
    expect(refused.status).toBe(401);
    for (const res of [accepted, refused, await http('GET', `${gw.http}/health`, { headers: origin })]) {
      expect(res.headers).toMatchObject({ 'access-control-allow-origin': kListed, 'access-control-allow-credentials': 'true', vary: 'Origin' });
    }
    expect(refused.headers['access-control-expose-headers']).toContain('WWW-Authenticate');
  });

  it('the session cookie is honoured on a write from a listed origin, and still refused from another', async () => {
    const issued = await http('POST', `${gw.http}/users/tokens/issue`, { body: JSON.stringify(kAdmin) });
    const cookie = `access_token=${issued.json.access_token}`;
    const revoke = (origin: string) => http('POST', `${gw.http}/users/tokens/revoke`, { headers: { cookie, origin }, body: JSON.stringify({ token_id: 'none' }) });
    expect((await revoke('https://evil.example')).status).toBe(401);
    // 404: authenticated by the cookie, no such session.
    expect((await revoke(kListed)).status).toBe(404);
  });

  it('`*` lets any origin call, without credentials', async () => {
    const open = await startGateway({ corsOrigins: '*' });
    try {
      const res = await http('GET', `${open.http}/health`, { headers: { origin: 'https://any.example' } });
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    } finally {
      await open.close();
    }
  });
});
