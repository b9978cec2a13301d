import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { cleanupPki, makePki } from '../helpers/certs.ts';
import { http, run, WsClient } from '../helpers/clients.ts';
import { freePort } from '../helpers/gateway.ts';

// The built CLI, as `npm start` and `npx fleetgate` run it (npm test builds first).
const kMain = join(import.meta.dirname, '../../dist/main.js');
let dir: string;
let env: NodeJS.ProcessEnv;
/** every `serve` started, so that a failed test does not leave one holding the port for the next */
const servers: ChildProcess[] = [];
afterEach(() => {
  for (const child of servers.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

const cli = (...args: string[]) => run(process.execPath, [kMain, ...args], { env });

/** `serve` expected to stop at start; tracked, so that if it starts after all the test's end stops it. */
function serveFails(extraEnv: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [kMain, 'serve'], { env: { ...env, ...extraEnv } });
  servers.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Starts `fleetgate serve` and resolves once it logs that it listens. */
function serve(extraEnv: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; exited: Promise<number | null>; log: () => string }> {
  const child = spawn(process.execPath, [kMain, 'serve'], { env: { ...env, ...extraEnv } });
  servers.push(child);
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

const kVersion: string = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')).version;

/** stderr holds one line that starts `fleetgate: `, and no stack trace */
function expectOneLine(stderr: string): void {
  expect(stderr).toMatch(/^fleetgate: [^\n]+\n$/);
  expect(stderr).not.toMatch(/^\s+at /m);
}

describe('fleetgate with no command, --version, an unsupported Node (issue 12)', () => {
  it('prints help and exits 2 without a command, instead of starting a server', async () => {
    const res = await cli();
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('Usage: fleetgate [options] [command]');
    expect(res.stderr).toMatch(/serve +run the gateway/);
    expect(res.stdout).not.toContain('listening');
  });

  it('exits 2 on an unknown command, 0 on --help', async () => {
    expect((await cli('srve')).code).toBe(2);
    expect((await cli('srve')).stderr).toContain("unknown command 'srve'");
    expect((await cli('--help')).code).toBe(0);
  });

  it('refuses a cluster of no instances in one line with exit 2, before starting anything', async () => {
    const res = await cli('cluster', '--instances', '0');
    expect(res.code).toBe(2);
    expectOneLine(res.stderr);
    expect(res.stderr).toContain('FG_ERR_CONFIG_INVALID: --instances: must be 1 to 16, not "0"');
  });

  it.each(['--version', '-V'])('prints the package version with %s', async (flag) => {
    expect(await cli(flag)).toMatchObject({ code: 0, stdout: `${kVersion}\n` });
  });

  it.each([['22.3.0', false], ['20.11.1', false], ['18.20.0', false], ['20.12.0', true]])('on Node %s: runs = %s (else one line and exit 2)', async (version, runs) => {
    // A preload makes the process look like that Node release; main.ts refuses it before doing anything else.
    const preload = join(dir, `node-${version}.mjs`);
    writeFileSync(preload, `Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '${version}' } });\n`);
    const res = await run(process.execPath, ['--import', preload, kMain, '--version'], { env });
    if (runs) {
      expect(res).toMatchObject({ code: 0, stdout: `${kVersion}\n` });
      return;
    }
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expectOneLine(res.stderr);
    expect(res.stderr).toContain(`Node ${version} is not supported: fleetgate runs on Node 20 (>= 20.12)`);
  });
});

describe('fleetgate provision: the operator verbs (issue 12)', () => {
  it('disable, enable, rotate-secret, connections list, channel delete, client delete and domain delete reach a running gateway', async () => {
    const server = await serve();
    onTestFailed(() => console.log('gateway log:\n' + server.log()));
    const json = async (...args: string[]) => {
      const res = await cli('provision', ...args);
      expect(res.code, res.stderr).toBe(0);
      return JSON.parse(res.stdout);
    };
    const domain = await json('domain', 'create', '--name', 'ops', '--route', 'ops');
    const client = await json('client', 'create', '--domain', 'ops', '--name', 'dev');
    const channel = await json('channel', 'create', '--domain', 'ops', '--name', 'ch', '--route', 'ops-ch', '--format', 'raw');
    await json('connect', '--domain', 'ops', '--client', client.id, '--channel', channel.id);
    const base = `http://127.0.0.1:${env.FLEETGATE_HTTP_PORT}`;
    const wsUrl = (secret: string) => `${base.replace('http', 'ws')}/ws/m/ops/c/ops-ch?authorization=${secret}`;
    const post = (secret: string) => http('POST', `${base}/http/m/ops/c/ops-ch`, { headers: { authorization: secret }, body: 'hi' });
    await expect.poll(async () => (await post(client.secret)).status, { timeout: 3000 }).toBe(202);

    expect(await json('connections', 'list', '--domain', 'ops')).toEqual(expect.arrayContaining([
      { client_id: client.id, channel_id: channel.id, type: 'publish' }, { client_id: client.id, channel_id: channel.id, type: 'subscribe' },
    ]));
    expect(await json('connections', 'list', '--domain', 'ops', '--channel', 'ops-ch', '--client', client.id)).toHaveLength(2);

    // disable: the live WebSocket is closed and publishing refused; enable: accepted again.
    const ws = await WsClient.connect(wsUrl(client.secret));
    expect(await json('client', 'disable', client.id, '--domain', 'ops')).toMatchObject({ id: client.id, status: 'disabled' });
    expect(await ws.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/^FG_ERR_AUTHN_DISABLED/) });
    expect((await post(client.secret)).status).toBe(401);
    expect(await json('client', 'enable', client.id, '--domain', domain.id)).toMatchObject({ status: 'enabled' });
    await expect.poll(async () => (await post(client.secret)).status, { timeout: 3000 }).toBe(202);

    // rotate-secret: a new random secret, printed once; the old one is refused.
    const rotated = await json('client', 'rotate-secret', client.id, '--domain', 'ops');
    expect(rotated.secret).toMatch(/^[0-9a-f]{32}$/);
    expect(rotated.secret).not.toBe(client.secret);
    await expect.poll(async () => (await post(client.secret)).status, { timeout: 3000 }).toBe(401);
    expect((await post(rotated.secret)).status).toBe(202);
    expect((await json('client', 'rotate-secret', client.id, '--domain', 'ops', '--secret', 'chosen-secret-0001')).secret).toBe('chosen-secret-0001');

    // channel delete closes its subscriber; client delete; domain delete empties the lists.
    await expect.poll(async () => (await post('chosen-secret-0001')).status, { timeout: 3000 }).toBe(202);
    const sub = await WsClient.connect(wsUrl('chosen-secret-0001'));
    expect(await json('channel', 'delete', 'ops-ch', '--domain', 'ops')).toEqual({ deleted: 'ops-ch' });
    expect((await sub.closed).code).toBe(1008);
    expect(await json('connections', 'list', '--domain', 'ops')).toEqual([]);
    expect(await json('client', 'delete', client.id, '--domain', 'ops')).toEqual({ deleted: client.id });
    expect(await json('client', 'list', '--domain', 'ops')).toEqual([]);
    expect(await json('domain', 'delete', 'ops')).toEqual({ deleted: 'ops' });
    expect((await json('domain', 'list')).map((d: { id: string }) => d.id)).not.toContain(domain.id);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it('domain delete takes the clients with it and closes their connections', async () => {
    const server = await serve();
    const domain = JSON.parse((await cli('provision', 'domain', 'create', '--name', 'gone')).stdout);
    const client = JSON.parse((await cli('provision', 'client', 'create', '--domain', domain.id, '--name', 'dev')).stdout);
    const channel = JSON.parse((await cli('provision', 'channel', 'create', '--domain', domain.id, '--name', 'ch', '--format', 'raw')).stdout);
    await cli('provision', 'connect', '--domain', domain.id, '--client', client.id, '--channel', channel.id);
    const path = `/m/${domain.id}/c/${channel.id}`;
    // The gateway sees what the CLI wrote at its next look at the store's change log.
    await expect.poll(async () => (await http('POST', `http://127.0.0.1:${env.FLEETGATE_HTTP_PORT}/http${path}`, { headers: { authorization: client.secret }, body: 'hi' })).status, { timeout: 3000 }).toBe(202);
    const ws = await WsClient.connect(`ws://127.0.0.1:${env.FLEETGATE_HTTP_PORT}/ws${path}?authorization=${client.secret}`);
    expect((await cli('provision', 'domain', 'delete', domain.id)).code).toBe(0);
    expect((await ws.closed).code).toBe(1008);
    expect((await cli('provision', 'client', 'list', '--domain', domain.id)).stderr).toContain('FG_ERR_NOT_FOUND');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it.each([
    [['client', 'disable', 'no-such-client', '--domain', 'x'], 'FG_ERR_NOT_FOUND: domain "x" not found'],
    [['domain', 'delete', 'no-such-domain'], 'FG_ERR_NOT_FOUND: domain "no-such-domain" not found'],
  ])('provision %j fails with exit 2 and its code', async (args, message) => {
    const res = await cli('provision', ...args);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(message);
  });

  it('refuses a client or channel of another domain as not found', async () => {
    const a = JSON.parse((await cli('provision', 'domain', 'create', '--name', 'a')).stdout);
    const b = JSON.parse((await cli('provision', 'domain', 'create', '--name', 'b')).stdout);
    const client = JSON.parse((await cli('provision', 'client', 'create', '--domain', a.id, '--name', 'dev')).stdout);
    const channel = JSON.parse((await cli('provision', 'channel', 'create', '--domain', a.id, '--name', 'ch')).stdout);
    for (const args of [['client', 'delete', client.id], ['client', 'disable', client.id], ['channel', 'delete', channel.id]]) {
      const res = await cli('provision', ...args, '--domain', b.id);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('FG_ERR_NOT_FOUND');
    }
    expect(JSON.parse((await cli('provision', 'client', 'list', '--domain', a.id)).stdout)).toMatchObject([{ id: client.id, status: 'enabled' }]);
  });

  it('needs an id: usage error, exit 2', async () => {
    const res = await cli('provision', 'client', 'delete', '--domain', 'x');
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("missing required argument 'id'");
  });
});

describe('fleetgate serve: what stops a start is said in one line, exit 2 (issue 12)', () => {
  const held: Server[] = [];
  afterEach(() => held.splice(0).forEach((s) => s.close()));
  /** A port another process (here: a plain TCP server) already listens on. */
  const takenPort = (): Promise<number> => new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port));
    held.push(s);
  });
  const start = (extra: NodeJS.ProcessEnv) => serveFails({ FLEETGATE_HTTP_PORT: '0', FLEETGATE_MQTT_PORT: '0', ...extra });

  it('refuses an HTTP port another gateway listens on, rather than sharing it (uWS sets SO_REUSEPORT)', async () => {
    const first = await serve();
    onTestFailed(() => console.log('first gateway log:\n' + first.log()));
    const second = await serveFails({});
    expect(second.code).toBe(2);
    expectOneLine(second.stderr);
    expect(second.stderr).toContain(`fleetgate: FG_ERR_CONFIG_INVALID: FLEETGATE_HTTP_PORT: port ${env.FLEETGATE_HTTP_PORT} on 127.0.0.1 is already in use`);
    // The first one still serves.
    expect((await http('GET', `http://127.0.0.1:${env.FLEETGATE_HTTP_PORT}/health`)).status).toBe(200);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
  });

  it('refuses a taken MQTT port', async () => {
    const port = await takenPort();
    const res = await start({ FLEETGATE_MQTT_PORT: String(port) });
    expect(res.code).toBe(2);
    expectOneLine(res.stderr);
    expect(res.stderr).toContain(`FLEETGATE_MQTT_PORT: port ${port} on 127.0.0.1 is already in use`);
  });

  describe('with TLS', () => {
    let pki: ReturnType<typeof makePki>;
    beforeAll(() => {
      pki = makePki();
    });
    afterAll(() => cleanupPki(pki));
    const tls = () => ({ FLEETGATE_TLS_CERT: pki.serverCert, FLEETGATE_TLS_KEY: pki.serverKey, FLEETGATE_HTTPS_PORT: '0', FLEETGATE_MQTTS_PORT: '0' });

    it.each([['FLEETGATE_HTTPS_PORT'], ['FLEETGATE_MQTTS_PORT']])('refuses a taken %s', async (setting) => {
      const port = await takenPort();
      const res = await start({ ...tls(), [setting]: String(port) });
      expect(res.code).toBe(2);
      expectOneLine(res.stderr);
      expect(res.stderr).toContain(`${setting}: port ${port} on 127.0.0.1 is already in use`);
    });

    it('refuses a missing certificate file, naming the setting and the file', async () => {
      const missing = join(dir, 'no-such.crt');
      const res = await start({ ...tls(), FLEETGATE_TLS_CERT: missing });
      expect(res.code).toBe(2);
      expectOneLine(res.stderr);
      expect(res.stderr).toContain(`FG_ERR_CONFIG_INVALID: FLEETGATE_TLS_CERT: cannot read ${missing}: no such file`);
    });

    it('refuses a key that is not PEM', async () => {
      const res = await start({ ...tls(), FLEETGATE_TLS_KEY: pki.ca });
      expect(res.code).toBe(2);
      expectOneLine(res.stderr);
      expect(res.stderr).toContain('FG_ERR_CONFIG_INVALID: FLEETGATE_TLS_CERT, FLEETGATE_TLS_KEY: ');
    });
  });

  it.each([
    ['a file that is not a database', () => {
      const file = join(dir, 'not-a-db.db');
      writeFileSync(file, 'this is not SQLite\n'.repeat(100));
      return file;
    }, 'file is not a database'],
    ['a path under a regular file', () => {
      const file = join(dir, 'plain-file');
      writeFileSync(file, '');
      return join(file, 'fleetgate.db');
    }, 'cannot open'],
  ])('refuses a store it cannot open: %s', async (_name, path, reason) => {
    const store = `sqlite:${path()}`;
    const res = await start({ FLEETGATE_STORE: store });
    expect(res.code).toBe(2);
    expectOneLine(res.stderr);
    expect(res.stderr).toContain(`FG_ERR_CONFIG_INVALID: FLEETGATE_STORE: cannot open ${store}: `);
    expect(res.stderr).toContain(reason);
    // The CLI's provisioning commands say the same.
    const provision = await run(process.execPath, [kMain, 'provision', 'domain', 'list'], { env: { ...env, FLEETGATE_STORE: store } });
    expect(provision.code).toBe(2);
    expectOneLine(provision.stderr);
  });
});
