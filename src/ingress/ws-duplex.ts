import { Duplex } from 'node:stream';
import type { WebSocket } from 'uWebSockets.js';

/**
 * A uWS WebSocket as the Duplex stream aedes.handle() takes (MQTT over WebSocket). Frames in are copied (uWS reuses
 * their memory after the callback) and pushed; writes go out as binary frames, and a write that leaves more than
 * `budget` bytes queued waits for uWS's drain before it completes, so aedes slows down for a slow reader instead of
 * buffering without bound. Either side closing closes the other.
 */
export class WsDuplex extends Duplex {
  private readonly ws: WebSocket<unknown>;
  private readonly budget: number;
  private waiting: ((err?: Error | null) => void) | undefined;
  private open = true;
  /** as net.Socket names it, for the broker's logs: the client's address, as its upgrade request read it */
  readonly remoteAddress: string;

  constructor(ws: WebSocket<unknown>, budget: number, remoteAddress: string) {
    super();
    this.ws = ws;
    this.budget = budget;
    this.remoteAddress = remoteAddress;
  }

  /** uWS message callback. */
  receive(data: ArrayBuffer): void {
    this.push(Buffer.copyBytesFrom(new Uint8Array(data)));
  }

  /** uWS drain callback. */
  drained(): void {
    if (this.waiting !== undefined && this.ws.getBufferedAmount() <= this.budget) {
      const done = this.waiting;
      this.waiting = undefined;
      done();
    }
  }

  /** uWS close callback: the socket is gone. */
  peerClosed(): void {
    this.open = false;
    this.waiting?.(new Error('WebSocket closed'));
    this.waiting = undefined;
    this.push(null);
    this.destroy();
  }

  override _read(): void {
    // Frames are pushed as they arrive; uWS has no per-socket read pause to map a full buffer to.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.send([chunk], done);
  }

  /** What was written while the stream was corked (encode-once delivery corks it per turn) leaves in one uWS write. */
  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    this.send(chunks.map((c) => c.chunk), done);
  }

  private send(frames: Buffer[], done: (err?: Error | null) => void): void {
    if (!this.open) return done(new Error('WebSocket closed'));
    // uWS send: 1 written through, 0 queued, 2 dropped at the hard limit (then the rest would be dropped too).
    let status = 1;
    this.ws.cork(() => {
      for (const frame of frames) if ((status = this.ws.send(frame, true, false)) === 2) break;
    });
    if (status === 2) return done(new Error('subscriber too slow: WebSocket backpressure limit reached'));
    if (this.ws.getBufferedAmount() > this.budget) this.waiting = done;
    else done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (this.open) {
      this.open = false;
      this.ws.end(1000);
    }
    done(err);
  }
}
