import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

const admin = { email: 'admin@example.com', password: 'correct horse battery' };
const basic = (user: string, password: string) => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
let auth: Record<string, string>;

let gw: TestGateway;
const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = auth) =>
  http(method, gw.http + path, { headers, body: body === undefined ? undefined : JSON.stringify(body) });

beforeAll(async () => {
  gw = await startGateway({ adminEmail: admin.email, adminPassword: admin.password });
  // The admin signs in like any user and uses its access token (DESIGN.md §9).
  const tokens = await api('POST', '/users/tokens/issue', { email: admin.email, password: admin.password }, { 'content-type': 'application/json' });
  expect(tokens.status).toBe(201);
  auth = { authorization: `Bearer ${tokens.json.access_token}`, 'content-type': 'application/json' };
});
afterAll(() => gw.close());

let fleets = 0;

/** Provisions through the REST API only, as a user would; the app gets a chosen secret, the device a generated one. */
async function provision() {
  const appSecret = `dashboard-secret-${String(++fleets).padStart(4, '0')}`;
  const domain = (await api('POST', '/domains', { name: 'Plant 1' })).json;
  const device = (await api('POST', `/${domain.id}/clients`, { name: 'sensor' })).json;
  const app = (await api('POST', `/${domain.id}/clients`, { name: 'dashboard', secret: appSecret })).json;
  const channel = (await api('POST', `/${domain.id}/channels`, { name: 'temps', route: 'temps' })).json;
  expect((await api('POST', `/${domain.id}/channels/connect`, { client_ids: [device.id], channel_ids: [channel.id], types: ['publish'] })).status).toBe(201);
  expect((await api('POST', `/${domain.id}/channels/connect`, { client_ids: [app.id], channel_ids: [channel.id], types: ['subscribe'] })).status).toBe(201);
  return { domain, device, app, channel, topic: `m/${domain.id}/c/${channel.id}` };
}

describe('REST API: provisioning (DESIGN.md §9)', () => {
  it('creates domain, clients, channel and connections; the device publishes and the app receives', async () => {
    const f = await provision();
    expect(f.domain).toMatchObject({ id: expect.any(String), name: 'Plant 1', route: null });
    expect(f.device).toMatchObject({ name: 'sensor', status: 'enabled', secret: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(f.app.secret).toMatch(/^dashboard-secret-\d{4}$/);
    expect(f.channel).toMatchObject({ route: 'temps', payload_format: 'senml+json' });
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`);
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).status).toBe(202);
    expect(JSON.parse((await ws.next()).toString())).toHaveLength(3);
    ws.close();
  });

  it('lists without ever showing a secret', async () => {
    const f = await provision();
    const list = await api('GET', `/${f.domain.id}/clients`);
    // Listed by (created_at, id): two clients made in the same millisecond come in id order.
    expect(list.json).toMatchObject({ total: 2 });
    expect(list.json.clients.map((c: { name: string }) => c.name).sort()).toEqual(['dashboard', 'sensor']);
    expect(list.text).not.toContain(f.device.secret);
    expect((await api('GET', `/${f.domain.id}/channels?limit=1`)).json).toMatchObject({ total: 1, limit: 1, channels: [{ name: 'temps' }] });
    expect((await api('GET', `/${f.domain.id}/clients/${f.device.id}`)).json).not.toHaveProperty('secret');
  });

  it.each([
    ['no credentials', () => ({}), 'FG_ERR_AUTHN_MISSING'],
    ['Basic credentials, even the right ones', () => ({ authorization: basic(admin.email, admin.password) }), 'FG_ERR_AUTHN_INVALID'],
    ['a forged token', () => ({ authorization: 'Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA' }), 'FG_ERR_AUTHN_INVALID'],
    ['a client secret', () => ({ authorization: 'Client 0123456789abcdef0123' }), 'FG_ERR_AUTHN_INVALID'],
  ])('refuses %s with 401 and a Bearer challenge', async (_name, headers, code) => {
    const res = await api('POST', '/domains', { name: 'x' }, headers() as Record<string, string>);
    expect(res.status).toBe(401);
    expect(res.json).toMatchObject({ code });
    expect(res.headers['www-authenticate']).toBe('Bearer realm="fleetgate"');
  });

  it('refuses a user who is not an admin with 403', async () => {
    const user = { email: 'plain@example.com', password: 'plain user password' };
    expect((await api('POST', '/users', user, { 'content-type': 'application/json' })).status).toBe(201);
    const tokens = (await api('POST', '/users/tokens/issue', user, { 'content-type': 'application/json' })).json;
    const res = await api('POST', '/domains', { name: 'x' }, { authorization: `Bearer ${tokens.access_token}` });
    expect(res).toMatchObject({ status: 403, json: { code: 'FG_ERR_AUTHZ_FORBIDDEN' } });
  });

  it.each([
    ['a missing name', '/domains', {}, 'name'],
    ['a reserved route', '/domains', { name: 'x', route: 'channels' }, 'reserved'],
    ['a route shaped like an id', '/domains', { name: 'x', route: '00000000-0000-0000-0000-000000000000' }, 'id'],
    ['invalid JSON', '/domains', '{', 'JSON'],
  ])('400 for %s', async (_name, path, body, message) => {
    const res = typeof body === 'string' ? await http('POST', gw.http + path, { headers: auth, body }) : await api('POST', path, body);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: 'FG_ERR_REQUEST_INVALID' });
    expect(res.json.message).toContain(message);
  });

  it('400 for a short secret or an unknown payload format; 404 for unknown ids; 409 for duplicates', async () => {
    const f = await provision();
    expect((await api('POST', `/${f.domain.id}/clients`, { name: 'x', secret: 'short' })).json.code).toBe('FG_ERR_REQUEST_INVALID');
    expect((await api('POST', `/${f.domain.id}/channels`, { name: 'x', payload_format: 'xml' })).json.code).toBe('FG_ERR_REQUEST_INVALID');
    expect((await api('POST', '/no-such-domain/clients', { name: 'x' })).status).toBe(404);
    const missing = await api('POST', `/${f.domain.id}/channels/connect`, { client_ids: ['nope'], channel_ids: [f.channel.id] });
    expect(missing).toMatchObject({ status: 404, json: { code: 'FG_ERR_NOT_FOUND' } });
    const dup = await api('POST', `/${f.domain.id}/channels`, { name: 'again', route: 'temps' });
    expect(dup).toMatchObject({ status: 409, json: { code: 'FG_ERR_CONFLICT' } });
    const sameSecret = await api('POST', `/${f.domain.id}/clients`, { name: 'copy', secret: f.app.secret });
    expect(sameSecret).toMatchObject({ status: 409, json: { code: 'FG_ERR_CONFLICT', message: 'secret already exists' } });
  });

  it('serves /health and Prometheus /metrics', async () => {
    const health = await http('GET', gw.http + '/health');
    expect(health.json).toMatchObject({ status: 'ok', version: expect.any(String), uptime: expect.any(Number), listeners: { http: { port: gw.gateway.httpPort } } });
    const metrics = await http('GET', gw.http + '/metrics');
    expect(metrics.headers['content-type']).toContain('text/plain');
    expect(metrics.text).toMatch(/fleetgate_messages_accepted_total\{protocol="http"\} \d+/);
    expect(metrics.text).toContain('fleetgate_http_publish_duration_seconds_bucket');
    expect(metrics.text).toMatch(/^fleetgate_event_loop_delay_p99_seconds \d/m);
    expect(metrics.text).toMatch(/fleetgate_api_requests_total\{route="\/domains",status="201"\} [1-9]/);
    expect(metrics.text).toMatch(/fleetgate_authentications_total\{protocol="api",result="ok"\} [1-9]/);
  });
});

describe('REST API: changes bite at once, live connections included', () => {
  it('disabling a client refuses its publishes and closes its WebSocket; enabling restores it', async () => {
    const f = await provision();
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`);
    expect((await api('POST', `/${f.domain.id}/clients/${f.app.id}/disable`)).json.status).toBe('disabled');
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHN_DISABLED/) });
    expect((await api('POST', `/${f.domain.id}/clients/${f.device.id}/disable`)).status).toBe(200);
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).json.code).toBe('FG_ERR_AUTHN_DISABLED');
    await api('POST', `/${f.domain.id}/clients/${f.device.id}/enable`);
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).status).toBe(202);
  });

  it('rotating a secret refuses the old one at once and closes connections made with it', async () => {
    const f = await provision();
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`);
    const rotated = await api('PATCH', `/${f.domain.id}/clients/${f.app.id}/secret`, { secret: 'rotated-secret-00001' });
    expect(rotated.json.secret).toBe('rotated-secret-00001');
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHN_INVALID/) });
    await expect(WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`)).rejects.toMatchObject({ status: 401 });
    const again = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=rotated-secret-00001`);
    again.close();
  });

  it('disconnecting closes the subscriber (1008) and refuses the publisher (403)', async () => {
    const f = await provision();
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`);
    const body = { client_ids: [f.app.id, f.device.id], channel_ids: [f.channel.id], types: ['publish', 'subscribe'] };
    expect((await api('POST', `/${f.domain.id}/channels/disconnect`, body)).json).toEqual({ disconnected: 2 });
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHZ_FORBIDDEN/) });
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).status).toBe(403);
  });

  it('removing a publish connection closes a WebSocket that was publishing on it', async () => {
    const f = await provision();
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.device.secret}`);
    await api('POST', `/${f.domain.id}/channels/disconnect`, { client_ids: [f.device.id], channel_ids: [f.channel.id], types: ['publish'] });
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHZ_FORBIDDEN/) });
  });

  it('deleting a channel or a client closes what used it', async () => {
    const f = await provision();
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`);
    expect((await api('DELETE', `/${f.domain.id}/channels/${f.channel.id}`)).status).toBe(204);
    expect((await ws.closed).code).toBe(1008);
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).status).toBe(404);
    expect((await api('DELETE', `/${f.domain.id}/clients/${f.device.id}`)).status).toBe(204);
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).status).toBe(401);
    expect((await api('DELETE', `/${f.domain.id}/clients/${f.device.id}`)).status).toBe(404);
  });
});

describe('REST API: connections and domains (issue 12)', () => {
  it('lists a domain\'s connections, narrowed to a client or a channel; 404 for an unknown domain, or a client of another', async () => {
    const f = await provision();
    const other = await provision();
    const all = await api('GET', `/${f.domain.id}/connections`);
    expect(all.status).toBe(200);
    expect(all.json).toMatchObject({ total: 2, offset: 0, limit: 100 });
    expect(all.json.connections).toEqual(expect.arrayContaining([
      { client_id: f.device.id, channel_id: f.channel.id, type: 'publish' },
      { client_id: f.app.id, channel_id: f.channel.id, type: 'subscribe' },
    ]));
    expect((await api('GET', `/${f.domain.id}/connections?client_id=${f.app.id}`)).json.connections).toEqual([{ client_id: f.app.id, channel_id: f.channel.id, type: 'subscribe' }]);
    expect((await api('GET', `/${f.domain.id}/connections?channel_id=temps&limit=1`)).json).toMatchObject({ total: 2, limit: 1, connections: [expect.any(Object)] });
    expect(await api('GET', '/no-such-domain/connections')).toMatchObject({ status: 404, json: { code: 'FG_ERR_NOT_FOUND' } });
    // Another domain's client or channel is not found here, whether or not it exists there.
    expect(await api('GET', `/${f.domain.id}/connections?client_id=${other.app.id}`)).toMatchObject({ status: 404, json: { code: 'FG_ERR_NOT_FOUND' } });
    expect(await api('GET', `/${f.domain.id}/connections?channel_id=${other.channel.id}`)).toMatchObject({ status: 404, json: { code: 'FG_ERR_NOT_FOUND' } });
    expect((await api('GET', `/${f.domain.id}/connections`, undefined, {})).status).toBe(401);
  });

  it('deleting a domain deletes its clients, channels and connections and closes its clients\' live connections', async () => {
    const f = await provision();
    const kept = await provision();
    const ws = await WsClient.connect(`${gw.ws}/ws/${f.topic}?authorization=${f.app.secret}`);
    const device = mqtt.connect(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, username: f.device.id, password: f.device.secret });
    await new Promise((resolve, reject) => device.once('connect', resolve).once('error', reject));
    const deviceClosed = new Promise<void>((resolve) => device.once('close', () => resolve()));

    expect((await api('DELETE', `/domains/${f.domain.id}`)).status).toBe(204);
    expect((await ws.closed).code).toBe(1008);
    await deviceClosed;
    expect((await publish(gw.http, `/http/${f.topic}`, f.device.secret, kMagistralaPack)).status).toBe(401);
    expect((await api('GET', '/domains?limit=1000')).json.domains.map((d: { id: string }) => d.id)).not.toContain(f.domain.id);
    expect(await api('GET', `/${f.domain.id}/clients`)).toMatchObject({ status: 404, json: { code: 'FG_ERR_NOT_FOUND' } });
    expect(await api('DELETE', `/domains/${f.domain.id}`)).toMatchObject({ status: 404, json: { code: 'FG_ERR_NOT_FOUND' } });
    // Another domain is untouched.
    expect((await publish(gw.http, `/http/${kept.topic}`, kept.device.secret, kMagistralaPack)).status).toBe(202);
    expect((await api('GET', `/${kept.domain.id}/connections`)).json.total).toBe(2);
  });

  it('deleting a domain takes its route with it: a new domain may use it', async () => {
    const first = await api('POST', '/domains', { name: 'old', route: 'reused-route' });
    expect((await api('DELETE', '/domains/reused-route')).status).toBe(204);
    const second = await api('POST', '/domains', { name: 'new', route: 'reused-route' });
    expect(second.status).toBe(201);
    expect(second.json.id).not.toBe(first.json.id);
  });
});

describe('password reset form (GET/POST /password/reset)', () => {
  const form = (url: string, fields: Record<string, string>) =>
    http('POST', url, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });

  it('mails a link to this gateway\'s own port, whose page sets the password with a plain form', async () => {
    const user = { email: 'reset-form@example.com', password: 'old password 1' };
    expect((await api('POST', '/users', user, { 'content-type': 'application/json' })).status).toBe(201);
    expect((await api('POST', '/password/reset-request', { email: user.email }, { 'content-type': 'application/json' })).status).toBe(201);
    const outbox = join(gw.dir, 'outbox');
    const mail = readdirSync(outbox).map((f) => readFileSync(join(outbox, f), 'utf8')).find((m) => m.includes(`To: ${user.email}`))!;
    // The mail may wrap the long line (quoted-printable): undo that first.
    const link = /(http:\/\/\S+\?token=[\w.-]+)/.exec(mail.replace(/=\r?\n/g, ''))![1]!;
    expect(link.startsWith(`${gw.http}/password/reset?token=`)).toBe(true);

    const page = await http('GET', link);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect(page.text).toMatch(/<form method="post">/);
    expect(page.text).not.toContain('<script');
    expect(page.text).not.toContain(link.split('token=')[1]);

    const mismatch = await form(link, { password: 'new password 1', confirm_password: 'something else' });
    expect(mismatch.status).toBe(400);
    expect(mismatch.text).toContain('confirm_password does not match password');
    const done = await form(link, { password: 'new password 1', confirm_password: 'new password 1' });
    expect(done.status).toBe(200);
    expect(done.text).toContain('Password changed');
    const issue = (password: string) => api('POST', '/users/tokens/issue', { email: user.email, password }, { 'content-type': 'application/json' });
    expect((await issue('new password 1')).status).toBe(201);
    expect((await issue(user.password)).status).toBe(401);
    // Single use, as the JSON API.
    const again = await form(link, { password: 'new password 2', confirm_password: 'new password 2' });
    expect(again.status).toBe(401);
    expect(again.text).toContain('recovery token already used');
  });

  it('refuses a missing or forged token, escaping what it echoes', async () => {
    expect((await http('GET', `${gw.http}/password/reset`)).status).toBe(400);
    const forged = await form(`${gw.http}/password/reset?token=<b>x</b>`, { password: 'new password 1', confirm_password: 'new password 1' });
    expect(forged.status).toBe(401);
    expect(forged.text).not.toContain('<b>');
    expect((await form(`${gw.http}/password/reset`, { password: 'x', confirm_password: 'x' })).status).toBe(401);
  });
});
