import { connect as tcp } from 'node:net';
import { generate, parser, type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trustedProxies } from '../../src/ingress/proxy-protocol.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';

/** A PROXY v2 header for a TCP/IPv4 connection from `source` [haproxy proxy-protocol.txt §2.2]. */
function proxyV2(source: string, command: 'PROXY' | 'LOCAL' = 'PROXY'): Buffer {
  const sig = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
  if (command === 'LOCAL') return Buffer.concat([sig, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const body = Buffer.concat([Buffer.from(source.split('.').map(Number)), Buffer.from([127, 0, 0, 1]), Buffer.from([0x30, 0x39, 0x07, 0x5b])]);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, 0x00, body.length]), body]);
}

let gw: TestGateway;
let device: TestClient;

/** Sends `bytes` from `localAddress`, then a CONNECT; resolves with the packets received until the server closes. */
function session(localAddress: string, prefix: Buffer, split = false): Promise<Packet[]> {
  const socket = tcp({ port: gw.gateway.mqttPort!, host: '127.0.0.1', localAddress });
  const received: Packet[] = [];
  const p = parser({ protocolVersion: 4 });
  p.on('packet', (packet) => {
    received.push(packet);
    if (packet.cmd === 'connack') socket.end();
  });
  socket.on('data', (d) => p.parse(d));
  const connectPacket = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'proxied', keepalive: 30, username: device.id, password: Buffer.from(device.secret) });
  return new Promise((resolve) => {
    socket.on('error', () => {});
    socket.on('close', () => resolve(received));
    socket.on('connect', async () => {
      if (split) {
        // a header may arrive in pieces
        socket.write(prefix.subarray(0, 5));
        await new Promise((r) => setTimeout(r, 30));
        socket.write(prefix.subarray(5));
      } else socket.write(prefix);
      socket.write(connectPacket);
    });
  });
}

beforeAll(async () => {
  gw = await startGateway({ trustedProxies: '127.0.0.2/32', auditLog: join(tmpdir(), `fleetgate-proxy-audit-${process.pid}.log`) });
  const fleet = await provisionFleet(gw.gateway);
  device = await fleet.client('device', ['publish']);
});
afterAll(async () => {
  await gw?.close();
  rmSync(gw.config.auditLog, { force: true });
});

describe('PROXY protocol v2 on the MQTT listener (FLEETGATE_TRUSTED_PROXIES)', () => {
  it('accepts a PROXY v2 header from a trusted proxy, whole or in pieces, and serves MQTT behind it', async () => {
    for (const split of [false, true]) {
      const packets = await session('127.0.0.2', proxyV2('203.0.113.9'), split);
      expect(packets.map((p) => [p.cmd, (p as { returnCode?: number }).returnCode])).toEqual([['connack', 0]]);
    }
  });

  it('closes a trusted proxy\'s connection whose PROXY header is malformed (wrong version), without serving MQTT', async () => {
    const bad = proxyV2('203.0.113.9');
    bad[12] = 0x11; // version 1 in the v2 signature
    expect(await session('127.0.0.2', bad)).toEqual([]);
  });

  it('accepts a trusted proxy\'s LOCAL header (its health check)', async () => {
    expect((await session('127.0.0.2', proxyV2('', 'LOCAL')))[0]).toMatchObject({ cmd: 'connack', returnCode: 0 });
  });

  it('refuses a PROXY header from an address that is not a trusted proxy: nobody claims another address', async () => {
    expect(await session('127.0.0.1', proxyV2('203.0.113.9'))).toEqual([]);
    expect(await session('127.0.0.1', Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 12345 1883\r\n'))).toEqual([]);
  });

  it('serves a direct client (no header) from anywhere, trusted proxy or not', async () => {
    expect((await session('127.0.0.1', Buffer.alloc(0)))[0]).toMatchObject({ cmd: 'connack', returnCode: 0 });
    expect((await session('127.0.0.2', Buffer.alloc(0)))[0]).toMatchObject({ cmd: 'connack', returnCode: 0 });
  });
});

/** One raw HTTP request from `localAddress`, after `prefix`; the whole answer, once the server closes or 1 s passes. */
function rawHttp(localAddress: string, prefix: Buffer, request: string): Promise<string> {
  const socket = tcp({ port: gw.gateway.httpPort!, host: '127.0.0.1', localAddress });
  let answer = '';
  socket.on('data', (d) => (answer += d));
  socket.on('connect', () => socket.write(Buffer.concat([prefix, Buffer.from(request)])));
  return new Promise((resolve) => {
    const timer = setTimeout(() => socket.destroy(), 1000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.on('error', () => {});
  });
}

const auditEvents = () => readFileSync(gw.config.auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('PROXY protocol v2 on the HTTP/WebSocket listener', () => {
  const get = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';

  it('refuses a PROXY header from an address that is not a trusted proxy: 403 FG_ERR_PROXY_UNTRUSTED, closed', async () => {
    const answer = await rawHttp('127.0.0.1', proxyV2('203.0.113.9'), get);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('FG_ERR_PROXY_UNTRUSTED');
  });

  it('serves a trusted proxy, and audits and limits by the address its header names', async () => {
    expect(await rawHttp('127.0.0.2', proxyV2('203.0.113.10'), get)).toMatch(/^HTTP\/1\.1 200 /);
    const publish = `POST /http/m/x/c/y HTTP/1.1\r\nHost: x\r\nAuthorization: Client wrong-secret-for-audit\r\nContent-Length: 2\r\n\r\n[]`;
    expect(await rawHttp('127.0.0.2', proxyV2('203.0.113.11'), publish)).toMatch(/^HTTP\/1\.1 401 /);
    expect(auditEvents()).toContainEqual(expect.objectContaining({ event: 'authn', protocol: 'http', remote: '203.0.113.11', result: 'refused' }));
  });

  it('MQTT behind a trusted proxy is audited with the device\'s address too', async () => {
    await session('127.0.0.2', proxyV2('203.0.113.12'));
    expect(auditEvents()).toContainEqual(expect.objectContaining({ event: 'authn', protocol: 'mqtt', remote: '203.0.113.12', result: 'ok' }));
  });
});

describe('trustedProxies', () => {
  it.each([
    [['10.0.0.0/8'], '10.1.2.3', true],
    [['10.0.0.0/8'], '::ffff:10.1.2.3', true],
    [['10.0.0.0/8'], '11.0.0.1', false],
    [['127.0.0.1'], '127.0.0.1', true],
    [['fd00::/8'], 'fd12::1', true],
    [[], '127.0.0.1', false],
  ])('%j trusts %s: %s', (cidrs, address, expected) => {
    expect(trustedProxies(cidrs)(address)).toBe(expected);
  });
});
