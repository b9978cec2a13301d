import { createConnection } from 'node:net';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

// Every test speaks from its own loopback addresses (Linux routes all of 127/8 to lo), so that it meets only its own
// failures: the limits are per address and per (account, address).
const admin = { email: 'admin@example.com', password: 'admin password 1' };
const kLimits = { authLimitAccountFailures: 3, authLimitAddressFailures: 8, authLimitBackoff: 2, authLimitMaxBackoff: 8, authLimitWindow: 60 };

let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
const agents: Agent[] = [];
const sockets: { close(): void }[] = [];

interface Reply {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly json: any;
}

/** One HTTP request from `address`. */
async function httpFrom(address: string, method: string, url: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  const dispatcher = new Agent({ localAddress: address });
  agents.push(dispatcher);
  const res = await request(url, { method: method as 'POST', headers, body, dispatcher });
  const text = await res.body.text();
  return { status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined, json: text ? JSON.parse(text) : undefined };
}

const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });
const publishFrom = (address: string, headers: Record<string, string>) =>
  httpFrom(address, 'POST', `${gw.http}/http/${fleet.topic}`, { 'content-type': 'application/senml+json', ...headers }, kMagistralaPack);
const signInFrom = (address: string, password: string) =>
  httpFrom(address, 'POST', `${gw.http}/users/tokens/issue`, { 'content-type': 'application/json' }, JSON.stringify({ email: admin.email, password }));
const statuses = async (n: number, attempt: () => Promise<Reply>) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await attempt()).status);
  return out;
};
const sleep = (s: number) => new Promise((resolve) => setTimeout(resolve, s * 1000));

/** A WebSocket upgrade from `address`: 'open', or the refusal's status and body. */
function wsFrom(address: string, headers: Record<string, string>): Promise<{ status: number; json?: any; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${gw.ws}/ws/${fleet.topic}`, { headers, localAddress: address, handshakeTimeout: 5000 });
    sockets.push(socket);
    socket.once('open', () => resolve({ status: 101 }));
    socket.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(body), retryAfter: res.headers['retry-after'] }));
    });
    socket.once('error', reject);
  });
}

/**
 * MQTT.js from `address`, over TCP or over WebSocket (`/mqtt`): resolves 0 once connected, else the CONNACK code (and
 * the MQTT 5 reason string).
 */
function mqttFrom(address: string, options: IClientOptions, over: 'tcp' | 'ws' = 'tcp'): Promise<{ code: number; reason?: string }> {
  return new Promise((resolve) => {
    const settings = { protocolVersion: 4 as const, reconnectPeriod: 0, connectTimeout: 5000, ...options };
    const client = over === 'ws'
      ? mqtt.connect(`${gw.ws}/mqtt`, { ...settings, wsOptions: { localAddress: address } })
      : new MqttClient(() => createConnection({ host: '127.0.0.1', port: gw.gateway.mqttPort!, localAddress: address }), settings);
    sockets.push({ close: () => client.end(true) });
    let reason: string | undefined;
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') reason = packet.properties?.reasonString;
    });
    client.once('connect', () => resolve({ code: 0 }));
    client.once('error', (err: Error & { code?: number }) => {
      resolve({ code: err.code ?? -1, reason });
      client.end(true);
    });
  });
}

let device: TestClient;
let other: TestClient;

beforeAll(async () => {
  gw = await startGateway({ adminEmail: admin.email, adminPassword: admin.password, ...kLimits });
  fleet = await provisionFleet(gw.gateway);
  device = await fleet.client('device', ['publish', 'subscribe']);
  other = await fleet.client('other', ['publish']);
}, 60_000);
afterAll(async () => {
  for (const s of sockets) s.close();
  await Promise.all(agents.map((a) => a.close()));
  await gw.close();
});

describe('failure limits (docs/RATE-LIMITS.md)', () => {
  it('HTTP Basic: after 3 wrong secrets of a client from an address, 429 with Retry-After there, unchecked, while the same client still publishes from another address', async () => {
    expect(await statuses(3, () => publishFrom('127.0.0.2', basic(device.id, 'wrong secret wrong secret')))).toEqual([401, 401, 401]);
    // Refused before the secret is looked at: the right one is refused too.
    const limited = await publishFrom('127.0.0.2', basic(device.id, device.secret));
    expect(limited).toMatchObject({ status: 429, retryAfter: '2', json: { code: 'FG_ERR_RATE_LIMITED', retry_after: 2 } });
    // The attacker at .2 does not lock the device out of .3.
    expect((await publishFrom('127.0.0.3', basic(device.id, device.secret))).status).toBe(202);
    // Another client from the attacker's address is not blocked either (3 failures are below the address limit).
    expect((await publishFrom('127.0.0.2', basic(other.id, other.secret))).status).toBe(202);
  });

  it('a block ends after Retry-After; a failure soon after blocks again for twice as long; a success clears the count', async () => {
    expect(await statuses(3, () => publishFrom('127.0.0.4', basic(device.id, 'wrong secret wrong secret')))).toEqual([401, 401, 401]);
    expect((await publishFrom('127.0.0.4', basic(device.id, device.secret))).retryAfter).toBe('2');
    await sleep(2.2);
    expect((await publishFrom('127.0.0.4', basic(device.id, 'wrong secret wrong secret'))).status).toBe(401);
    const again = await publishFrom('127.0.0.4', basic(device.id, device.secret));
    expect(again).toMatchObject({ status: 429, retryAfter: '4', json: { retry_after: 4 } });
    await sleep(4.2);
    expect((await publishFrom('127.0.0.4', basic(device.id, device.secret))).status).toBe(202);
    // The success forgot the failures and the doubling: the next block takes 3 failures again and lasts 2 s, not 8.
    expect(await statuses(3, () => publishFrom('127.0.0.4', basic(device.id, 'wrong secret wrong secret')))).toEqual([401, 401, 401]);
    expect((await publishFrom('127.0.0.4', basic(device.id, device.secret))).retryAfter).toBe('2');
  }, 20_000);

  it('an address with 8 failures on any accounts is blocked, except for a client that got in from it before; other addresses are not', async () => {
    // A client that published from .5 before the failures began (devices behind one NAT).
    expect((await publishFrom('127.0.0.5', basic(other.id, other.secret))).status).toBe(202);
    expect(await statuses(8, () => publishFrom('127.0.0.5', { authorization: `Client guess-${Math.random()}` }))).toEqual(Array(8).fill(401));
    expect(await publishFrom('127.0.0.5', { authorization: `Client ${device.secret}` })).toMatchObject({ status: 429, retryAfter: '2', json: { code: 'FG_ERR_RATE_LIMITED' } });
    expect((await publishFrom('127.0.0.5', basic(device.id, device.secret))).status).toBe(429);
    expect((await publishFrom('127.0.0.5', basic(other.id, other.secret))).status).toBe(202);
    expect((await publishFrom('127.0.0.6', { authorization: `Client ${device.secret}` })).status).toBe(202);
  });

  it('sign-in: 3 wrong passwords of a user from an address, then 429 there; the right password still signs in from another address', async () => {
    expect(await statuses(3, () => signInFrom('127.0.0.7', 'not the password'))).toEqual([401, 401, 401]);
    expect(await signInFrom('127.0.0.7', admin.password)).toMatchObject({ status: 429, retryAfter: '2', json: { code: 'FG_ERR_RATE_LIMITED', retry_after: 2 } });
    expect((await signInFrom('127.0.0.8', admin.password)).status).toBe(201);
    await sleep(2.2);
    expect((await signInFrom('127.0.0.7', admin.password)).status).toBe(201);
  }, 20_000);

  it('WebSocket: the upgrade is refused with 429 and Retry-After after 3 wrong secrets; the client connects from another address', async () => {
    for (let i = 0; i < 3; i++) expect((await wsFrom('127.0.0.9', basic(device.id, 'wrong secret wrong secret'))).status).toBe(401);
    expect(await wsFrom('127.0.0.9', basic(device.id, device.secret))).toMatchObject({ status: 429, retryAfter: '2', json: { code: 'FG_ERR_RATE_LIMITED' } });
    expect((await wsFrom('127.0.0.10', basic(device.id, device.secret))).status).toBe(101);
  });

  it('MQTT 3.1.1: CONNACK 5 after 3 wrong secrets of a client from an address; the client connects from another address', async () => {
    const wrong = { username: device.id, password: 'wrong secret wrong secret' };
    for (let i = 0; i < 3; i++) expect((await mqttFrom('127.0.0.11', wrong)).code).toBe(4);
    expect((await mqttFrom('127.0.0.11', { username: device.id, password: device.secret })).code).toBe(5);
    expect((await mqttFrom('127.0.0.12', { username: device.id, password: device.secret })).code).toBe(0);
  });

  it('MQTT over WebSocket: the same limits, by the address of the WebSocket', async () => {
    const wrong = { username: device.id, password: 'wrong secret wrong secret' };
    for (let i = 0; i < 3; i++) expect((await mqttFrom('127.0.0.15', wrong, 'ws')).code).toBe(4);
    expect((await mqttFrom('127.0.0.15', { username: device.id, password: device.secret }, 'ws')).code).toBe(5);
    expect((await mqttFrom('127.0.0.16', { username: device.id, password: device.secret }, 'ws')).code).toBe(0);
  });

  it('MQTT 5: CONNACK 0x97 (quota exceeded) naming FG_ERR_RATE_LIMITED; a block ends after its time', async () => {
    const v5 = { protocolVersion: 5 as const };
    for (let i = 0; i < 3; i++) expect((await mqttFrom('127.0.0.13', { ...v5, username: device.id, password: 'wrong secret wrong secret' })).code).toBe(0x86);
    const limited = await mqttFrom('127.0.0.13', { ...v5, username: device.id, password: device.secret });
    expect(limited.code).toBe(0x97);
    expect(limited.reason).toMatch(/^FG_ERR_RATE_LIMITED/);
    expect((await mqttFrom('127.0.0.14', { ...v5, username: device.id, password: device.secret })).code).toBe(0);
    await sleep(2.2);
    expect((await mqttFrom('127.0.0.13', { ...v5, username: device.id, password: device.secret })).code).toBe(0);
  }, 20_000);

  it('counts blocks and refusals in /metrics', async () => {
    const metrics = await (await fetch(`${gw.http}/metrics`)).text();
    for (const protocol of ['http', 'ws', 'mqtt']) {
      expect(metrics).toMatch(new RegExp(`fleetgate_auth_rate_limited_total\\{action="block",protocol="${protocol}",scope="account"\\} [1-9]`));
      expect(metrics).toMatch(new RegExp(`fleetgate_auth_rate_limited_total\\{action="refuse",protocol="${protocol}",scope="account"\\} [1-9]`));
    }
    expect(metrics).toMatch(/fleetgate_auth_rate_limited_total\{action="block",protocol="http",scope="address"\} [1-9]/);
  });
});

describe('FLEETGATE_AUTH_LIMIT=false', () => {
  it('answers every wrong secret with 401, however many', async () => {
    const off = await startGateway({ ...kLimits, authLimit: 'false' });
    try {
      const f = await provisionFleet(off.gateway);
      const c = await f.client('device', ['publish']);
      const replies: number[] = [];
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`${off.http}/http/${f.topic}`, { method: 'POST', headers: { 'content-type': 'application/senml+json', ...basic(c.id, 'wrong secret wrong secret') }, body: kMagistralaPack });
        replies.push(res.status);
      }
      expect(replies).toEqual(Array(12).fill(401));
    } finally {
      await off.close();
    }
  });
});
