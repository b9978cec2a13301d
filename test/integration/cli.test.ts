import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { cleanupPki, makePki } from '../helpers/certs.ts';
import { http, run, WsClient } from '../helpers/clients.ts';
import { freePort } from '../helpers/gateway.ts';

// The built CLI, as `npm start` and `npx fleetgate` run it (npm test builds first).
const kMain = join(import.meta.dirname, '../../dist/main.js');
let dir: string;
let env: NodeJS.ProcessEnv;

const cli = (...args: string[]) => run(process.execPath, [kMain, ...args], { env });

/** Starts `fleetgate serve` and resolves once it logs that it listens. */
function serve(extraEnv: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; exited: Promise<number | null>; log: () => string }> {
  const child = spawn(process.execPath, [kMain, 'serve'], { env: { ...env, ...extraEnv } });
  let log = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      log += d;
      if (/"listener":"http"[^\n]*"msg":"listening"/.test(log)) resolve({ child, exited, log: () => log });
    });
    child.stderr!.on('data', (d) => (log += d));
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${log}`)));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-cli-'));
  env = { ...process.env, FLEETGATE_STORE: `sqlite:${join(dir, 'data', 'fleetgate.db')}`, FLEETGATE_HTTP_PORT: String(await freePort()), FLEETGATE_MQTT_PORT: '0', FLEETGATE_HOST: '127.0.0.1', FLEETGATE_SHUTDOWN_TIMEOUT: '3000' };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fleetgate CLI', () => {
  it('quick start: `provision demo` prints commands that work when pasted, while `serve` runs', async () => {
    const demo = await cli('provision', 'demo');
    expect(demo.code, demo.stderr).toBe(0);
    const wsUrl = /'(ws:\/\/[^']+)'/.exec(demo.stdout)![1]!;
    const curl = demo.stdout.split('\n').find((l) => l.startsWith('curl '))!;
    const server = await serve();
    // If anything below fails or hangs, the gateway's own log says where it was.
    onTestFailed(() => console.log('gateway log:\n' + server.log()));
    const sub = await WsClient.connect(wsUrl.replace('localhost', '127.0.0.1'));
    const published = await run('bash', ['-c', curl.replace('localhost', '127.0.0.1')]);
    expect(published.stdout).toMatch(/^HTTP\/1\.1 202 Accepted/);
    expect(JSON.parse((await sub.next()).toString())[2]).toMatchObject({ n: 'demo-sensor:voltage', v: 120.1 });

    // SIGTERM: subscribers are told the server is going away, and the process exits 0.
    server.child.kill('SIGTERM');
    expect(await sub.closed).toMatchObject({ code: 1001, reason: expect.stringMatching(/^FG_ERR_SHUTTING_DOWN/) });
    expect(await server.exited).toBe(0);
    expect(server.log()).not.toContain(/secret +([0-9a-f]{32})/.exec(demo.stdout)![1]);
  });

  it('a running gateway picks up what the CLI provisions, without a restart', async () => {
    const server = await serve();
    const domain = JSON.parse((await cli('provision', 'domain', 'create', '--name', 'cli', '--route', 'cli-domain')).stdout);
    const client = JSON.parse((await cli('provision', 'client', 'create', '--domain', 'cli-domain', '--name', 'dev')).stdout);
    const channel = JSON.parse((await cli('provision', 'channel', 'create', '--domain', domain.id, '--name', 'ch', '--route', 'ch', '--format', 'raw')).stdout);
    expect(JSON.parse((await cli('provision', 'connect', '--domain', domain.id, '--client', client.id, '--channel', channel.id)).stdout)).toEqual({ connected: 2 });
    const url = `http://127.0.0.1:${env.FLEETGATE_HTTP_PORT}/http/m/cli-domain/c/ch`;
    await expect.poll(async () => (await http('POST', url, { headers: { authorization: client.secret }, body: 'hello' })).status, { timeout: 3000 }).toBe(202);
    expect(JSON.parse((await cli('provision', 'client', 'list', '--domain', domain.id)).stdout)).toMatchObject([{ id: client.id, name: 'dev' }]);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it('refuses a bad setting at start, naming it, with exit code 2', async () => {
    const res = await run(process.execPath, [kMain, 'serve'], { env: { ...env, FLEETGATE_HTTP_PORT: 'eighty', FLEETGATE_MAX_PAYLOAD: '-1' } });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('FG_ERR_CONFIG_INVALID');
    expect(res.stderr).toContain('FLEETGATE_HTTP_PORT (--http-port)');
    expect(res.stderr).toContain('FLEETGATE_MAX_PAYLOAD (--max-payload)');
  });

  it('gives provisioning errors their code and a non-zero exit', async () => {
    const res = await cli('provision', 'client', 'create', '--domain', 'no-such-domain', '--name', 'x');
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('FG_ERR_NOT_FOUND');
  });

  it('lets flags override the environment', async () => {
    const res = await run(process.execPath, [kMain, '--http-port', 'nope', 'serve'], { env });
    expect(res.stderr).toContain('FLEETGATE_HTTP_PORT (--http-port)');
  });

  it('SIGHUP reloads the TLS files: a renewed server certificate is served without a restart (mutual TLS)', async () => {
    const [a, b] = [makePki(), makePki()];
    const cert = join(dir, 'server.crt');
    const key = join(dir, 'server.key');
    copyFileSync(a.serverCert, cert);
    copyFileSync(a.serverKey, key);
    const httpsPort = String(await freePort());
    // With a client CA, HTTPS is Node's TLS (the mutual-TLS terminator), which reloads; see the README on server-only TLS.
    const server = await serve({ FLEETGATE_TLS_CERT: cert, FLEETGATE_TLS_KEY: key, FLEETGATE_TLS_CLIENT_CA: a.ca, FLEETGATE_HTTPS_PORT: httpsPort, FLEETGATE_MQTTS_PORT: '0' });
    onTestFailed(() => console.log('gateway log:\n' + server.log()));
    const health = (ca: string) => run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', ca, `https://localhost:${httpsPort}/health`]);
    expect((await health(a.ca)).stdout).toBe('200');
    copyFileSync(b.serverCert, cert);
    copyFileSync(b.serverKey, key);
    server.child.kill('SIGHUP');
    await expect.poll(() => server.log()).toContain('TLS material reloaded');
    expect((await health(b.ca)).stdout).toBe('200');
    expect((await health(a.ca)).code).not.toBe(0);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    cleanupPki(a);
    cleanupPki(b);
  });
});

describe('fleetgate keys', () => {
  it('rotate: new tokens use the new key, old ones still work; retire: the old ones stop at once', async () => {
    const admin = { FLEETGATE_ADMIN_EMAIL: 'admin@example.com', FLEETGATE_ADMIN_PASSWORD: 'admin password 1' };
    const server = await (async () => {
      const saved = env;
      env = { ...env, ...admin };
      try {
        return await serve();
      } finally {
        env = saved;
      }
    })();
    const base = `http://127.0.0.1:${env.FLEETGATE_HTTP_PORT}`;
    const login = async () => (await http('POST', `${base}/users/tokens/issue`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: admin.FLEETGATE_ADMIN_EMAIL, password: admin.FLEETGATE_ADMIN_PASSWORD }) })).json.access_token as string;
    const kid = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
    const profile = async (token: string) => (await http('GET', `${base}/users/profile`, { headers: { authorization: `Bearer ${token}` } })).status;

    const before = await login();
    expect(await profile(before)).toBe(200);
    const { active } = JSON.parse((await cli('keys', 'rotate')).stdout);
    await expect.poll(async () => kid(await login()), { timeout: 3000 }).toBe(active);
    expect(await profile(before)).toBe(200);
    expect(JSON.parse((await http('GET', `${base}/keys/.well-known/jwks.json`)).text).keys.map((k: { kid: string }) => k.kid).sort()).toEqual([kid(before), active].sort());

    expect((await cli('keys', 'retire', '--kid', kid(before))).code).toBe(0);
    await expect.poll(() => profile(before), { timeout: 3000 }).toBe(401);
    expect(await profile(await login())).toBe(200);
    const keys = JSON.parse((await cli('keys', 'list')).stdout);
    expect(keys).toEqual(expect.arrayContaining([expect.objectContaining({ kid: kid(before), status: 'retired' }), expect.objectContaining({ kid: active, status: 'active' })]));
    expect((await cli('keys', 'list')).stdout).not.toContain('"d"');
    // The active key cannot be retired (tokens would have no key), nor an unknown one.
    const activeRetire = await cli('keys', 'retire', '--kid', active);
    expect(activeRetire.code).toBe(2);
    expect(activeRetire.stderr).toContain('FG_ERR_REQUEST_INVALID: rotate before retiring the active key');
    expect((await cli('keys', 'retire', '--kid', 'no-such-kid')).stderr).toContain('FG_ERR_NOT_FOUND');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
});
