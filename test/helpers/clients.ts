import { spawn } from 'node:child_process';
import { request } from 'undici';
import WebSocket from 'ws';

export interface HttpReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: any;
}

/** One HTTP request with undici; the body is read whole and parsed as JSON when it is JSON. */
export async function http(method: string, url: string, options: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<HttpReply> {
  const res = await request(url, { method: method as 'POST', headers: options.headers, body: options.body });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

export const kSenmlJson = { 'content-type': 'application/senml+json' };

export function publish(base: string, path: string, secret: string | undefined, body: unknown, headers: Record<string, string> = kSenmlJson) {
  return http('POST', base + path, {
    headers: { ...headers, ...(secret === undefined ? {} : { authorization: `Client ${secret}` }) },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

/** A WebSocket that collects what it receives, so a test can wait for the next message or prove none arrives. */
export class WsClient {
  readonly socket: WebSocket;
  private readonly queue: Buffer[] = [];
  private waiter: ((m: Buffer) => void) | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data: Buffer) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(data);
      } else this.queue.push(data);
    });
    this.closed = new Promise((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Resolves once open; rejects with `{status, body}` when the upgrade is refused, or after 5 s without an answer. */
  /** `tls`: CA, client certificate and key for wss:// (read as the `ws` package reads them). */
  static connect(url: string, headers: Record<string, string> = {}, protocols?: string[], tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {}): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, protocols, { headers, handshakeTimeout: 5000, ...tls });
      socket.once('open', () => resolve(new WsClient(socket)));
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body: body ? JSON.parse(body) : undefined })));
      });
      socket.once('error', reject);
    });
  }

  next(timeoutMs = 2000): Promise<Buffer> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error('no message within ' + timeoutMs + ' ms'));
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  }

  /** Waits `ms` and returns what arrived meanwhile (to prove that nothing did). */
  async drain(ms = 200): Promise<Buffer[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.splice(0);
  }

  send(data: string | Buffer): void {
    this.socket.send(data);
  }

  close(): void {
    this.socket.close();
  }
}

/** Runs a command (curl, the CLI) and collects its output. */
export function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}
