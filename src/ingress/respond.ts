import type { HttpResponse } from 'uWebSockets.js';
import { errorBody, kErrors, type Failure } from '../errors.ts';

const kStatusLines: Readonly<Record<number, string>> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content',
  400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found', 409: '409 Conflict',
  413: '413 Payload Too Large', 415: '415 Unsupported Media Type', 429: '429 Too Many Requests', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

function statusLine(status: number): string {
  return kStatusLines[status] ?? String(status);
}

/**
 * Writes an error as `{code, message, ...}` with the status of the registry. 401 carries a challenge for `scheme`;
 * 503 a Retry-After, 429 the failure's `retry_after` as Retry-After; 413 closes the connection, since the rest of the
 * body may still be on its way.
 */
export function writeFailure(res: HttpResponse, failure: Failure, scheme = 'Client'): void {
  const status = kErrors[failure.code].status;
  res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json');
  if (status === 401) res.writeHeader('www-authenticate', `${scheme} realm="fleetgate"`);
  if (status === 503) res.writeHeader('retry-after', '1');
  if (status === 429) res.writeHeader('retry-after', String(failure.detail?.retry_after ?? 1));
  res.end(errorBody(failure), status === 413);
}

export function writeJson(res: HttpResponse, status: number, body: unknown): void {
  res.writeStatus(statusLine(status));
  if (body === undefined) {
    res.end();
    return;
  }
  res.writeHeader('content-type', 'application/json').end(JSON.stringify(body));
}
