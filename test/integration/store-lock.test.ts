import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestGateway } from '../helpers/gateway.ts';

const admin = { email: 'admin@example.com', password: 'correct horse battery' };
const json = { 'content-type': 'application/json' };
const kLockMs = 8000;

const teardown: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of teardown.splice(0).reverse()) await step();
});

async function gatewayWithFleet(overrides: Parameters<typeof startGateway>[0] = {}) {
  const gw = await startGateway({ adminEmail: admin.email, adminPassword: admin.password, ...overrides });
  teardown.push(() => gw.close());
  const fleet = await provisionFleet(gw.gateway);
  const device = await fleet.client('device', ['publish']);
  const app = await fleet.client('app', ['subscribe']);
  const tokens = await http('POST', gw.http + '/users/tokens/issue', { headers: json, body: JSON.stringify(admin) });
  expect(tokens.status).toBe(201);
  const bearer = { ...json, authorization: `Bearer ${tokens.json.access_token}` };
  const api = (method: string, path: string, body?: unknown) =>
    http(method, gw.http + path, { headers: bearer, body: body === undefined ? undefined : JSON.stringify(body) });
  const subscribe = () => WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${app.secret}`);
  const send = (n: string) => publish(gw.http, `/http/${fleet.topic}`, device.secret, [{ n, v: 1 }]);
  return { gw, fleet, api, subscribe, send };
}

/**
 * Another process holding the store's write lock, as the sqlite3 shell's `BEGIN EXCLUSIVE;` does: resolves once the
 * lock is held; `released` once it is let go.
 */
async function lockStore(gw: TestGateway, ms: number): Promise<{ released: Promise<void>; isHeld: () => boolean }> {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const file = gw.config.store.slice('sqlite:'.length);
  const child = spawn(process.execPath, ['-e', `
    const db = new (require(process.argv[1]))(process.argv[2]);
    db.exec('BEGIN EXCLUSIVE');
    console.log('locked');
    setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[3]));
  `, driver, file, String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  teardown.push(() => child.kill());
  let held = false;
  const released = new Promise<void>((resolve) => child.once('exit', () => resolve(void (held = false))));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve(void (held = true)));
    child.once('exit', (code) => reject(new Error(`the locking process exited (${code}) before it held the lock`)));
  });
  return { released, isHeld: () => held };
}

/** GET /health every ~50 ms while `going()`; the status and latency (ms) of each. */
async function sampleHealth(base: string, going: () => boolean): Promise<{ statuses: number[]; latencies: number[] }> {
  const statuses: number[] = [];
  const latencies: number[] = [];
  while (going()) {
    const start = performance.now();
    statuses.push((await http('GET', base + '/health')).status);
    latencies.push(performance.now() - start);
    await sleep(50);
  }
  return { statuses, latencies };
}

const p99 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.ceil(values.length * 0.99) - 1]!;

describe('store locked by another process (BEGIN EXCLUSIVE for 8 s)', () => {
  it('keeps /health under 50 ms p99, publishing, subscribing and cached logins going; a write answers 503 FG_ERR_STORE_UNAVAILABLE with Retry-After while locked and succeeds after', { timeout: 30_000 }, async () => {
    const { gw, fleet, api, subscribe, send } = await gatewayWithFleet();
    const before = await subscribe();
    teardown.push(() => before.close());
    expect((await send('warm-up')).status).toBe(202); // the device's credential is now verified and cached
    expect(JSON.parse((await before.next()).toString())[0].n).toBe('warm-up');

    const lock = await lockStore(gw, kLockMs);
    const health = sampleHealth(gw.http, lock.isHeld);

    // Publishing goes on, to a subscriber from before the lock and to one that subscribes during it.
    const during = await subscribe();
    teardown.push(() => during.close());
    const sent: { n: string; status: number }[] = [];
    const publishing = (async () => {
      for (let i = 0; lock.isHeld(); i++) {
        const n = `during-${i}`;
        sent.push({ n, status: (await send(n)).status });
        await sleep(100);
      }
    })();

    // A provisioning write and a sign-in (it records a session) give up within the busy timeout, long before the lock goes.
    const [write, signIn] = await Promise.all([
      api('POST', `/${fleet.domain.id}/clients`, { name: 'late' }),
      http('POST', gw.http + '/users/tokens/issue', { headers: json, body: JSON.stringify(admin) }),
    ]);
    expect(lock.isHeld(), 'answered while the lock is held').toBe(true);
    for (const refused of [write, signIn]) {
      expect(refused.status).toBe(503);
      expect(refused.json.code).toBe('FG_ERR_STORE_UNAVAILABLE');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    }
    // Reads are not blocked by a writer in WAL mode, and an access token already issued still works.
    expect((await api('GET', `/${fleet.domain.id}/clients`)).status).toBe(200);
    expect((await api('GET', '/users/profile')).json.email).toBe(admin.email);
    expect(lock.isHeld(), 'answered while the lock is held').toBe(true);

    await lock.released;
    const [{ statuses, latencies }] = await Promise.all([health, publishing]);
    expect(latencies.length).toBeGreaterThan(kLockMs / 200);
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(p99(latencies)).toBeLessThan(50);
    expect(sent.length).toBeGreaterThan(kLockMs / 400);
    expect(sent.every((p) => p.status === 202)).toBe(true);
    const received = async (sub: WsClient) => {
      const names: string[] = [];
      for (const _ of sent) names.push(JSON.parse((await sub.next()).toString())[0].n);
      return names;
    };
    const names = sent.map((p) => p.n);
    expect(await received(before)).toEqual(names);
    expect(await received(during)).toEqual(names);

    // Once the lock is gone the same write succeeds, and so does a sign-in.
    const retried = await api('POST', `/${fleet.domain.id}/clients`, { name: 'late' });
    expect(retried.status).toBe(201);
    expect((await http('POST', gw.http + '/users/tokens/issue', { headers: json, body: JSON.stringify(admin) })).status).toBe(201);
    expect((await api('GET', `/${fleet.domain.id}/clients/${retried.json.id}`)).json.name).toBe('late');
  });
});

describe('store on a full disk', () => {
  // A real full file system: a small tmpfs (mounting one needs root, as CI runs), filled by another file.
  it('answers 507 FG_ERR_STORE_FULL to a write while publishing goes on, and the same write succeeds once there is room', { timeout: 30_000 }, async () => {
    const mount = mkdtempSync(join(tmpdir(), 'fleetgate-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mount]);
    teardown.push(() => rmSync(mount, { recursive: true, force: true }));
    teardown.push(() => execFileSync('umount', ['--lazy', mount]));
    const { fleet, api, subscribe, send } = await gatewayWithFleet({ store: `sqlite:${join(mount, 'fleetgate.db')}` });
    const sub = await subscribe();
    teardown.push(() => sub.close());

    const filler = join(mount, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (const chunk = Buffer.alloc(64 * 1024); ;) writeSync(fd, chunk);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }

    const refused = await api('POST', `/${fleet.domain.id}/clients`, { name: 'no-room' });
    expect(refused.status).toBe(507);
    expect(refused.json.code).toBe('FG_ERR_STORE_FULL');
    expect((await send('still-flowing')).status).toBe(202);
    expect(JSON.parse((await sub.next()).toString())[0].n).toBe('still-flowing');

    rmSync(filler);
    const retried = await api('POST', `/${fleet.domain.id}/clients`, { name: 'no-room' });
    expect(retried.status).toBe(201);
  });
});
