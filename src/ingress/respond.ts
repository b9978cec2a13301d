import type { HttpResponse } from 'uWebSockets.js';
import { errorBody, kErrors, type Failure } from '../errors.ts';

const kStatusLines: Readonly<Record<number, string>> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content',
  400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found', 405: '405 Method Not Allowed', 409: '409 Conflict',
  413: '413 Payload Too Large', 415: '415 Unsupported Media Type', 429: '429 Too Many Requests', 500: '500 Internal Server Error', 501: '501 Not Implemented',
  503: '503 Service Unavailable', 507: '507 Insufficient Storage',
};

export function statusLine(status: number): string {
  return kStatusLines[status] ?? String(status);
}

/**
 * Writes an error as `{code, message, ...}` with the status of the registry. 401 carries a challenge for `scheme`;
 * 503 a Retry-After, 429 the failure's `retry_after` as Retry-After; `allow` becomes the Allow header (405).
 * 413 asks the client to close (`Connection: close`) but keeps reading: the rest of the body may still be on its way,
 * and a server that closes with unread data resets the connection (RST), so a client still sending (undici, fetch:
 * no `Expect: 100-continue`) would see EPIPE instead of the 413. uWS goes on parsing the body by its framing and drops
 * it, until the client closes or uWS's 10 s timeout after the response does.
 * A framing error (400/501 of RFC 9112 §6.3) or an untrusted PROXY header closes at once: what follows on the
 * connection cannot be trusted.
 */
export function writeFailure(res: HttpResponse, failure: Failure, scheme = 'Client', allow = ''): void {
  const status = kErrors[failure.code].status;
  res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json');
  if (status === 401) res.writeHeader('www-authenticate', `${scheme} realm="fleetgate"`);
  if (status === 503) res.writeHeader('retry-after', '1');
  if (status === 413) res.writeHeader('connection', 'close');
  if (status === 429) res.writeHeader('retry-after', String(failure.detail?.retry_after ?? 1));
  if (allow !== '') res.writeHeader('allow', allow);
  res.end(errorBody(failure), failure.code === 'FG_ERR_REQUEST_FRAMING' || failure.code === 'FG_ERR_TRANSFER_CODING' || failure.code === 'FG_ERR_PROXY_UNTRUSTED');
}

export function writeJson(res: HttpResponse, status: number, body: unknown): void {
  res.writeStatus(statusLine(status));
  if (body === undefined) {
    res.end();
    return;
  }
  res.writeHeader('content-type', 'application/json').end(JSON.stringify(body));
}
