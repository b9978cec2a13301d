import { connect, type Socket } from 'node:net';
import uWS, { type us_listen_socket } from 'uWebSockets.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteAddress } from '../../../src/ingress/remote.ts';
import { PeerCertificates, privateSocketPath } from '../../../src/tls/terminator.ts';

/** A uWS app on a unix socket and a TCP port, answering with the certificate `peers` finds for each request. */
const peers = new PeerCertificates();
const target = privateSocketPath();
const sockets: us_listen_socket[] = [];
let port = 0;

beforeAll(async () => {
  const app = uWS.App().get('/address', (res) => {
    res.end(JSON.stringify(remoteAddress(res, peers)));
  }).get('/*', (res) => {
    res.end(JSON.stringify(peers.of(res) ?? null));
  });
  sockets.push(await new Promise<us_listen_socket>((resolve) => app.listen_unix((s) => resolve(s), target.path)));
  sockets.push(await new Promise<us_listen_socket>((resolve) => app.listen('127.0.0.1', 0, (s) => resolve(s))));
  port = uWS.us_socket_local_port(sockets[1]!);
});
afterAll(() => {
  for (const s of sockets) uWS.us_listen_socket_close(s);
  target.remove();
});

function ask(socket: Socket, header: Buffer, path = '/'): Promise<unknown> {
  socket.write(Buffer.concat([header, Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)]));
  return new Promise((resolve) => socket.once('data', (d) => {
    socket.destroy();
    resolve(JSON.parse(d.toString().split('\r\n\r\n')[1]!));
  }));
}

describe('tls/terminator: PeerCertificates', () => {
  it('names a connection\'s certificate by the PROXY v2 token the terminator sends on the private socket', async () => {
    const { header, release } = peers.admit({ ok: true, cn: 'the-secret' }, '198.51.100.7');
    expect(await ask(connect(target.path), header)).toEqual({ ok: true, cn: 'the-secret' });
    release();
    expect(await ask(connect(target.path), header)).toBeNull();
  });

  it('ignores the very same header on a TCP listener: a token is honoured only without a network peer', async () => {
    const { header, release } = peers.admit({ ok: true, cn: 'the-secret' }, '198.51.100.7');
    expect(await ask(connect(port, '127.0.0.1'), header)).toBeNull();
    expect(await ask(connect(target.path), header)).toEqual({ ok: true, cn: 'the-secret' });
    release();
  });

  it('gives the address of the client the terminator took the connection from, with or without a certificate', async () => {
    const { header, release } = peers.admit(undefined, '198.51.100.9');
    expect(await ask(connect(target.path), header, '/address')).toBe('198.51.100.9');
    release();
    // on a TCP listener the peer is the socket's own
    expect(await ask(connect(port, '127.0.0.1'), Buffer.alloc(0), '/address')).toBe('127.0.0.1');
  });

  it('gives nothing for a connection that had no certificate', async () => {
    const { header } = peers.admit(undefined, '198.51.100.8');
    expect(await ask(connect(target.path), header)).toBeNull();
  });
});
