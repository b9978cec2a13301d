import type { HttpResponse, WebSocket } from 'uWebSockets.js';

/** The peer address of a uWS request or socket as text ('' through the TLS terminator, which has no network peer). */
export function remoteAddressOf(res: HttpResponse | WebSocket<unknown>): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
}
