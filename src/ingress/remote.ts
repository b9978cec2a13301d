/** What uWS objects that know their peer have in common: an HTTP response, a WebSocket. */
interface Peer {
  getRemoteAddressAsText(): ArrayBuffer;
}

/**
 * The peer's address as text, for logs and the audit stream. Read it synchronously: an HTTP response may not be
 * touched once aborted. Behind the Node TLS terminator (mutual TLS) the peer is the private unix socket: "".
 */
export function remoteAddress(peer: Peer): string {
  return Buffer.from(peer.getRemoteAddressAsText()).toString('latin1');
}
