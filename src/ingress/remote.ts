import type { HttpResponse } from 'uWebSockets.js';
import type { PeerCertificates } from '../tls/terminator.ts';

const text = (address: ArrayBuffer): string => Buffer.from(address).toString('latin1');

/**
 * Where a request comes from, for logs, the audit stream and the failure limits. Read it synchronously: a response
 * may not be touched once aborted (a WebSocket keeps what its upgrade read). In order:
 * - behind a trusted load balancer, the device's address its PROXY v2 header named (the edge refuses a PROXY header
 *   from any other peer: edge.ts);
 * - behind the Node TLS terminator (mutual TLS), the client it took the connection from (uWS sees the unix socket);
 * - otherwise the TCP peer.
 */
export function remoteAddress(res: HttpResponse, terminated: PeerCertificates | undefined): string {
  const peer = res.getRemoteAddressAsText();
  if (peer.byteLength === 0) return terminated?.addressOf(res) ?? '';
  const proxied = res.getProxiedRemoteAddressAsText();
  return text(proxied.byteLength > 0 ? proxied : peer);
}
