import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { HttpResponse } from 'uWebSockets.js';
import type { PeerCertificate } from '../auth/certificate.ts';

// PROXY protocol v2 [haproxy proxy-protocol.txt §2.2]: signature, version 2 + PROXY command, TCP over IPv6, 36 bytes.
const kProxyV2 = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x24]);

/**
 * Client certificates verified by the TLS terminator, for the uWebSockets.js routes to read. The uWS build that runs
 * here cannot show a peer certificate (DESIGN.md §12), so mutual TLS is terminated by Node's `tls` and each connection
 * is passed on over a private unix socket, opened by a PROXY v2 header whose source "address" is 128 random bits:
 * a token naming the verified certificate while the connection lives. A client on the public ports may send its own
 * PROXY header, but gains nothing: a token is honoured only on a connection with no network peer (the unix socket,
 * in a directory only this process can open), and cannot be guessed anyway.
 */
export class PeerCertificates {
  private readonly byToken = new Map<string, { readonly peer: PeerCertificate | undefined; readonly address: string }>();

  private entry(res: HttpResponse) {
    if (this.byToken.size === 0 || res.getRemoteAddress().byteLength !== 0) return undefined;
    // The binary address, as a 16-character key: no text formatting per request (it was 12% of a profile).
    return this.byToken.get(Buffer.from(res.getProxiedRemoteAddress()).toString('latin1'));
  }

  /** The certificate of the connection this request or upgrade came on; undefined when it had none. */
  of(res: HttpResponse): PeerCertificate | undefined {
    return this.entry(res)?.peer;
  }

  /** The address of the client the terminator took this connection from (uWS sees only the unix socket). */
  addressOf(res: HttpResponse): string | undefined {
    return this.entry(res)?.address;
  }

  /** Registers a connection (its certificate, its client's address); returns the PROXY header that names it, and the release for its end. */
  admit(peer: PeerCertificate | undefined, address: string): { header: Buffer; release: () => void } {
    const token = randomBytes(16);
    const header = Buffer.concat([kProxyV2, token, Buffer.alloc(16), Buffer.alloc(4)]);
    const key = token.toString('latin1');
    this.byToken.set(key, { peer, address });
    return { header, release: () => this.byToken.delete(key) };
  }
}

/** A private unix socket path for the terminator to reach the uWS app, in a fresh directory of mode 0700. */
export function privateSocketPath(): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-'));
  return { path: join(dir, 'https.sock'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * HTTPS/WSS with client certificates: each connection the Node TLS server accepts is piped to the uWS app's private
 * unix socket `target`, behind a PROXY v2 header naming its certificate. Both sides close together.
 */
export function relayTo(target: string, peers: PeerCertificates): (socket: TLSSocket, peer: PeerCertificate | undefined) => void {
  return (socket, peer) => {
    const { header, release } = peers.admit(peer, socket.remoteAddress ?? '');
    const inner: Socket = connect(target);
    inner.setNoDelay(true);
    socket.setNoDelay(true);
    inner.write(header);
    socket.pipe(inner);
    inner.pipe(socket);
    const end = (): void => {
      release();
      socket.destroy();
      inner.destroy();
    };
    socket.on('error', end).on('close', end);
    inner.on('error', end).on('close', end);
  };
}
