import type { HttpResponse } from 'uWebSockets.js';
import { fail, ok, type Result } from '../errors.ts';

/**
 * Streams a request body, refusing it as soon as it passes `limit` bytes (never buffering more than the limit).
 * `done` runs inside uWS's data callback, so writes there are corked for free. A body that arrives in one chunk (the
 * common case) is passed without a copy: that view is valid only until `done` returns, so `done` must not keep it.
 * `keep`: the caller uses the body after `done` returns (it waits for something else), so even one chunk is copied.
 * The caller must have registered res.onAborted.
 */
export function readBody(res: HttpResponse, limit: number, done: (body: Result<Uint8Array>) => void, keep = false): void {
  let chunks: Buffer[] | undefined;
  let size = 0;
  let finished = false;
  res.onData((chunk, isLast) => {
    if (finished) return;
    size += chunk.byteLength;
    if (size > limit) {
      finished = true;
      done(fail('FG_ERR_PARSE_TOO_LARGE', `body exceeds ${limit} bytes`));
      return;
    }
    if (isLast && chunks === undefined) {
      finished = true;
      done(ok(keep ? Buffer.copyBytesFrom(new Uint8Array(chunk)) : new Uint8Array(chunk)));
      return;
    }
    // uWS reuses the chunk's memory after this callback: keep a copy.
    (chunks ??= []).push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
    if (isLast) {
      finished = true;
      done(ok(Buffer.concat(chunks, size)));
    }
  });
}

/** Content-Length, when sent, lets an oversize body be refused before a byte of it is read. */
export function declaredTooLarge(contentLength: string, limit: number): boolean {
  return contentLength.length > 0 && Number(contentLength) > limit;
}
