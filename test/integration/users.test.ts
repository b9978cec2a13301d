import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestGateway } from '../helpers/gateway.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

const json = { 'content-type': 'application/json' };
const admin = { email: 'admin@example.com', password: 'admin password 1' };
let gw: TestGateway;
let adminAuth: Record<string, string>;

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = json) =>
  http(method, gw.http + path, { headers: { ...json, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const decode = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());

let n = 0;
async function newUser() {
  const user = { email: `user${++n}@example.com`, username: `user${n}`, password: 'long enough password' };
  const created = await api('POST', '/users', user);
  expect(created.status, created.text).toBe(201);
  const tokens = await api('POST', '/users/tokens/issue', { email: user.email, password: user.password });
  expect(tokens.status).toBe(201);
  return { ...user, id: created.json.id as string, access: tokens.json.access_token as string, refresh: tokens.json.refresh_token as string };
}

beforeAll(async () => {
  gw = await startGateway({ adminEmail: admin.email, adminPassword: admin.password });
  const tokens = await api('POST', '/users/tokens/issue', admin);
  adminAuth = bearer(tokens.json.access_token);
}, 60_000);
afterAll(() => gw.close());

describe('users and tokens (DESIGN.md §8)', () => {
  it('registers a user; refuses a duplicate email (409) and a short password (400)', async () => {
    const user = await newUser();
    expect((await api('POST', '/users', { email: user.email, password: 'another password' })).status).toBe(409);
    expect((await api('POST', '/users', { email: 'short@example.com', password: 'short' })).json).toMatchObject({ code: 'FG_ERR_REQUEST_INVALID' });
    const profile = await api('GET', '/users/profile', undefined, bearer(user.access));
    expect(profile.json).toMatchObject({ id: user.id, email: user.email, role: 'user' });
    expect(profile.text).not.toContain('scrypt');
  });

  it('issues EdDSA access and refresh tokens with the documented claims, verifiable with the JWKS', async () => {
    const user = await newUser();
    const header = JSON.parse(Buffer.from(user.access.split('.')[0]!, 'base64url').toString());
    const access = decode(user.access);
    const refresh = decode(user.refresh);
    expect(header).toMatchObject({ alg: 'EdDSA', kid: expect.any(String) });
    expect(access).toMatchObject({ iss: 'fleetgate.auth', sub: user.id, type: 0, sid: expect.any(String), jti: expect.any(String) });
    expect(access.exp - access.iat).toBe(3600);
    expect(refresh).toMatchObject({ type: 1, sid: access.sid });
    expect(refresh.exp - refresh.iat).toBe(86400);
    const jwks = (await api('GET', '/keys/.well-known/jwks.json')).json;
    expect(jwks.keys).toEqual([expect.objectContaining({ kid: header.kid, kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })]);
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });

  it('signs in by username too; a wrong password and an unknown user get the same 401', async () => {
    const user = await newUser();
    expect((await api('POST', '/users/tokens/issue', { username: user.username, password: user.password })).status).toBe(201);
    const wrong = await api('POST', '/users/tokens/issue', { email: user.email, password: 'not the password' });
    const unknown = await api('POST', '/users/tokens/issue', { email: 'nobody@example.com', password: 'not the password' });
    expect(wrong.status).toBe(401);
    expect(unknown.json).toEqual(wrong.json);
  });

  it('rotates refresh tokens; replaying an old one revokes the session and its access tokens', async () => {
    const user = await newUser();
    const next = await api('POST', '/users/tokens/refresh', undefined, bearer(user.refresh));
    expect(next.status).toBe(201);
    expect(decode(next.json.access_token).sid).toBe(decode(user.access).sid);
    const replay = await api('POST', '/users/tokens/refresh', undefined, bearer(user.refresh));
    expect(replay).toMatchObject({ status: 401, json: { code: 'FG_ERR_AUTHN_INVALID' } });
    expect((await api('GET', '/users/profile', undefined, bearer(next.json.access_token))).status).toBe(401);
    expect((await api('POST', '/users/tokens/refresh', undefined, bearer(next.json.refresh_token))).status).toBe(401);
  });

  it('refuses refresh and password reset without a token, or with garbage, with 401', async () => {
    for (const headers of [{}, bearer('not-a-token')]) {
      expect((await api('POST', '/users/tokens/refresh', undefined, headers)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID' });
      const reset = await api('PUT', '/password/reset', { password: 'new password 1', confirm_password: 'new password 1' }, headers);
      expect(reset).toMatchObject({ status: 401, json: { code: 'FG_ERR_AUTHN_INVALID' } });
    }
  });

  it('never takes a refresh or recovery token as an access token, nor an access token as a refresh token', async () => {
    const user = await newUser();
    expect((await api('GET', '/users/profile', undefined, bearer(user.refresh))).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'not an access token' });
    expect((await api('POST', '/users/tokens/refresh', undefined, bearer(user.access))).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'wrong token type' });
  });

  it('lists sessions and revokes one: its access token stops working at once', async () => {
    const user = await newUser();
    const second = (await api('POST', '/users/tokens/issue', { email: user.email, password: user.password })).json;
    const sessions = (await api('GET', '/users/tokens/refresh', undefined, bearer(user.access))).json.sessions;
    expect(sessions).toHaveLength(2);
    // Used once, so it is cached: revocation must evict it, not wait for a TTL.
    expect((await api('GET', '/users/profile', undefined, bearer(second.access_token))).status).toBe(200);
    expect((await api('POST', '/users/tokens/revoke', { token_id: decode(second.access_token).sid }, bearer(user.access))).status).toBe(204);
    expect((await api('GET', '/users/profile', undefined, bearer(second.access_token))).status).toBe(401);
    expect((await api('GET', '/users/profile', undefined, bearer(user.access))).status).toBe(200);
    const other = await newUser();
    expect((await api('POST', '/users/tokens/revoke', { token_id: decode(user.access).sid }, bearer(other.access))).status).toBe(404);
  });

  it('resets a password with a single-use recovery token sent by mail', async () => {
    const user = await newUser();
    expect((await api('POST', '/password/reset-request', { email: user.email })).status).toBe(201);
    expect((await api('POST', '/password/reset-request', { email: 'nobody@example.com' })).status).toBe(201);
    const outbox = join(gw.dir, 'outbox');
    const mail = readdirSync(outbox).map((f) => readFileSync(join(outbox, f), 'utf8')).find((m) => m.includes(`To: ${user.email}`))!;
    const token = /\?token=([\w.-]+)/.exec(mail)![1]!;
    expect(decode(token)).toMatchObject({ type: 2, sub: user.id });
    expect(decode(token).exp - decode(token).iat).toBe(300);
    // A recovery token is not an access token.
    expect((await api('GET', '/users/profile', undefined, bearer(token))).status).toBe(401);
    const mismatch = await api('PUT', '/password/reset', { password: 'new password 1', confirm_password: 'other' }, bearer(token));
    expect(mismatch.status).toBe(400);
    expect((await api('PUT', '/password/reset', { password: 'new password 1', confirm_password: 'new password 1' }, bearer(token))).status).toBe(201);
    expect((await api('PUT', '/password/reset', { password: 'new password 2', confirm_password: 'new password 2' }, bearer(token))).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'recovery token already used' });
    expect((await api('POST', '/users/tokens/issue', { email: user.email, password: 'new password 1' })).status).toBe(201);
    expect((await api('POST', '/users/tokens/issue', { email: user.email, password: user.password })).status).toBe(401);
    // Every session of the user ended with the reset.
    expect((await api('GET', '/users/profile', undefined, bearer(user.access))).status).toBe(401);
  });
});

describe('users on channels (DESIGN.md §5)', () => {
  it('a member publishes over HTTP and subscribes over WS with its access token; a non-member gets 403', async () => {
    const fleet = await provisionFleet(gw.gateway);
    const member = await newUser();
    const stranger = await newUser();
    expect((await api('POST', `/${fleet.domain.id}/users/assign`, { user_ids: [member.id] }, adminAuth)).json).toEqual({ assigned: 1 });
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${member.access}`);
    const res = await http('POST', `${gw.http}/http/${fleet.topic}`, { headers: { 'content-type': 'application/senml+json', ...bearer(member.access) }, body: kMagistralaPack });
    expect(res.status).toBe(202);
    expect(JSON.parse((await ws.next()).toString())).toHaveLength(3);
    const refused = await http('POST', `${gw.http}/http/${fleet.topic}`, { headers: { 'content-type': 'application/senml+json', ...bearer(stranger.access) }, body: kMagistralaPack });
    expect(refused).toMatchObject({ status: 403, json: { code: 'FG_ERR_AUTHZ_FORBIDDEN' } });

    // Removing the membership closes the member's live subscription at once.
    await api('POST', `/${fleet.domain.id}/users/unassign`, { user_ids: [member.id] }, adminAuth);
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHZ_FORBIDDEN/) });
  });

  it('revoking the session closes the WebSocket opened with its token', async () => {
    const fleet = await provisionFleet(gw.gateway);
    const member = await newUser();
    await api('POST', `/${fleet.domain.id}/users/assign`, { user_ids: [member.id] }, adminAuth);
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}`, bearer(member.access));
    await api('POST', '/users/tokens/revoke', { token_id: decode(member.access).sid }, bearer(member.access));
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHN_INVALID/) });
  });

  it('a client secret still works next to tokens', async () => {
    const fleet = await provisionFleet(gw.gateway);
    const device = await fleet.client('device', ['publish']);
    expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, kMagistralaPack)).status).toBe(202);
  });
});

describe('single-use tokens and the clock tolerance', () => {
  it('refuses a used recovery token replayed after its exp but within the tolerance (its "used" mark outlives exp)', async () => {
    const short = await startGateway({ jwtRecoveryTtl: '1', jwtClockTolerance: '5' });
    try {
      const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
        http(method, short.http + path, { headers: { ...json, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
      const user = { email: 'replay@example.com', password: 'long enough password' };
      expect((await call('POST', '/users', user)).status).toBe(201);
      expect((await call('POST', '/password/reset-request', { email: user.email })).status).toBe(201);
      const outbox = join(short.dir, 'outbox');
      const token = /\?token=([\w.-]+)/.exec(readdirSync(outbox).map((f) => readFileSync(join(outbox, f), 'utf8')).join('\n'))![1]!;
      const reset = { password: 'another password 1', confirm_password: 'another password 1' };
      expect((await call('PUT', '/password/reset', reset, bearer(token))).status).toBe(201);
      // past exp (1 s), inside the 5 s tolerance: the token still verifies, so only its mark stops it
      await new Promise((r) => setTimeout(r, 2_200));
      const replay = await call('PUT', '/password/reset', { password: 'a third password', confirm_password: 'a third password' }, bearer(token));
      expect(replay.json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'recovery token already used' });
    } finally {
      await short.close();
    }
  });
});
