import { BroadcastChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { GatewayError } from '../errors.ts';
import type { JwtClaims } from './jwt.ts';
import { kKeysChannel, kStale, kWorkerLoaded, type KeyMaterial, type VerifyOutcome } from './key-material.ts';

export interface AuthPoolOptions {
  readonly threads: number;
  /** verifications allowed to wait; beyond it verify() answers 'busy' at once */
  readonly queueLimit: number;
  readonly material: KeyMaterial;
  /** password hashing threads, a pool of their own (default 1) */
  readonly hashThreads?: number;
  /** password checks allowed to wait for a hashing thread (default 32); beyond it they are refused at once */
  readonly hashQueueLimit?: number;
}

interface Waiting {
  readonly token: string;
  readonly resolve: (outcome: VerifyOutcome) => void;
  readonly reject: (err: unknown) => void;
}

// One task round trip costs ~37 µs here, about half an EdDSA verify: tokens go to the workers in batches of up to
// this many per task (DESIGN.md §12).
const kBatch = 64;

// Workers always run the compiled worker: Node 20 cannot start a worker thread on a .ts file, even with tsx loaded
// (tests run src/ and so need `npm run build` first, which `npm test` does). From src/auth and dist/auth alike this
// resolves to dist/auth/worker.js.
const kWorkerFile = new URL('../../dist/auth/worker.js', import.meta.url).href;
const kHashWorkerFile = new URL('../../dist/auth/hash-worker.js', import.meta.url).href;

/** A piscina pool of `threads` threads that live as long as it does. */
function fixedPool(filename: string, threads: number, workerData?: unknown): Piscina {
  return new Piscina({ filename, minThreads: threads, maxThreads: threads, idleTimeout: Number.POSITIVE_INFINITY, workerData });
}

/** Settles when each of the pool's threads has loaded its module (rejects if one fails to). */
function loaded(piscina: Piscina, threads: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let count = 0;
    const onMessage = (message: unknown) => {
      if (message !== kWorkerLoaded || ++count < threads) return;
      piscina.off('message', onMessage).off('error', reject);
      resolve();
    };
    piscina.on('message', onMessage).on('error', reject);
  });
}

/**
 * The piscina pools behind a typed facade: verify() (batched) and sign() on the token pool, hashPassword() and
 * verifyPassword() on the password pool. All crypto of fleetgate runs here, never on the event loop. The two pools
 * have their own threads and queues: scrypt takes ~50 ms a call, so a flood of sign-ins would otherwise keep token
 * checks (~0.2 ms) waiting for seconds. Keys reach the token workers at start (workerData) and on change (a
 * BroadcastChannel); tasks only name the key version they need.
 */
export class AuthPool {
  private readonly piscina: Piscina;
  private readonly hashing: Piscina;
  /** password tasks waiting or running, and how many may */
  private hashInFlight = 0;
  private readonly hashLimit: number;
  /** settles when every worker has loaded its module (rejects if one fails to) */
  readonly ready: Promise<void>;
  private readonly channel = new BroadcastChannel(kKeysChannel);
  private readonly queueLimit: number;
  private readonly threads: number;
  private material: KeyMaterial;
  private waiting: Waiting[] = [];
  private scheduled = false;
  /** verification tasks at the workers */
  private running = 0;
  /** tokens waiting or at the workers */
  private inFlight = 0;

  constructor({ threads, queueLimit, material, hashThreads = 1, hashQueueLimit = 32 }: AuthPoolOptions) {
    this.queueLimit = queueLimit;
    this.threads = threads;
    this.material = material;
    this.hashLimit = hashThreads + hashQueueLimit;
    this.piscina = fixedPool(kWorkerFile, threads, { keys: material });
    this.hashing = fixedPool(kHashWorkerFile, hashThreads);
    this.ready = Promise.all([loaded(this.piscina, threads), loaded(this.hashing, hashThreads)]).then(() => undefined);
  }

  /** Verifications waiting or running. */
  get pending(): number {
    return this.inFlight;
  }

  /** 'busy' when the queue is full: the caller answers FG_ERR_AUTHN_BUSY instead of waiting without bound. */
  verify(token: string): Promise<VerifyOutcome> | 'busy' {
    if (this.inFlight >= this.queueLimit) return 'busy';
    this.inFlight++;
    return new Promise<VerifyOutcome>((resolve, reject) => {
      this.waiting.push({ token, resolve, reject });
      // Tokens of the same turn of the event loop leave together; none waits when a worker is free.
      if (!this.scheduled && this.running < this.threads) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  sign(claims: JwtClaims): Promise<string> {
    return this.run('sign', { claims });
  }

  /** Rejects with FG_ERR_AUTHN_BUSY at once when the password queue is full. */
  hashPassword(password: string): Promise<string> {
    return this.runHashing(password, 'hashPassword');
  }

  /** Rejects with FG_ERR_AUTHN_BUSY at once when the password queue is full. */
  verifyPassword(password: string, hash: string): Promise<boolean> {
    return this.runHashing({ password, hash }, 'verifyPassword');
  }

  private async runHashing<T>(task: unknown, name: string): Promise<T> {
    if (this.hashInFlight >= this.hashLimit) throw new GatewayError('FG_ERR_AUTHN_BUSY', 'too many sign-ins at once: retry shortly');
    this.hashInFlight++;
    try {
      return await this.hashing.run(task, { name });
    } finally {
      this.hashInFlight--;
    }
  }

  setKeys(material: KeyMaterial): void {
    this.material = material;
    this.channel.postMessage(material);
  }

  /** Runs a keyed task; a worker that missed a key broadcast answers kStale and gets the task again, keys attached. */
  private async run<T>(name: string, task: object): Promise<T> {
    const { version } = this.material;
    const result = await this.piscina.run({ ...task, version }, { name });
    return result === kStale ? this.piscina.run({ ...task, version, material: this.material }, { name }) : result;
  }

  async close(): Promise<void> {
    this.channel.close();
    // Node 20 aborts the whole process (V8 fatal error) when a worker is terminated while it loads its ES module: a
    // gateway stopped right after its start would die instead of exiting cleanly.
    await this.ready.catch(() => undefined);
    await Promise.all([this.piscina.destroy(), this.hashing.destroy()]);
  }

  /**
   * At most one verification task per worker is in flight; tokens that arrive meanwhile wait here and leave together
   * as the next batch when a worker is free. A lone token leaves at once; under load batches grow by themselves, so
   * the task round trip (~37 µs here) is paid per batch, not per token.
   */
  private flush(): void {
    this.scheduled = false;
    while (this.running < this.threads && this.waiting.length > 0) {
      const size = Math.min(kBatch, Math.ceil(this.waiting.length / (this.threads - this.running)));
      const batch = this.waiting.splice(0, size);
      this.running++;
      this.run<VerifyOutcome[]>('verifyBatch', { tokens: batch.map((w) => w.token) }).then(
        (outcomes) => batch.forEach((w, j) => w.resolve(outcomes[j]!)),
        (err: unknown) => batch.forEach((w) => w.reject(err)),
      ).finally(() => {
        this.running--;
        this.inFlight -= batch.length;
        this.flush();
      });
    }
  }
}
