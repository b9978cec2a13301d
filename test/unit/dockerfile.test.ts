import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kSettings, loadConfig, type GatewayOptions, type SettingKey } from '../../src/config.ts';
import { cleanupPki, makePki, type TestPki } from '../helpers/certs.ts';
import { run } from '../helpers/clients.ts';
import { freePort, startGateway } from '../helpers/gateway.ts';
import { descendants, healthy, spawnLogged } from '../helpers/processes.ts';

// No Docker engine here: the Dockerfile is read as Docker reads it, and its commands run from the repository root,
// which holds what the image's /app holds (dist/, node_modules/, scripts/healthcheck.mjs).
const kRoot = join(import.meta.dirname, '../..');

/** The runtime (last) stage's instructions, continuation lines joined and comments dropped. */
function runtimeStage(): { op: string; args: string }[] {
  const lines = readFileSync(join(kRoot, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n')
    .map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const stage = lines.slice(lines.findLastIndex((l) => /^FROM\s/i.test(l)));
  return stage.map((l) => /^(\S+)\s+(.*)$/.exec(l)!).map(([, op, args]) => ({ op: op!.toUpperCase(), args: args! }));
}
const kStage = runtimeStage();
const instruction = (op: string) => kStage.filter((i) => i.op === op).map((i) => i.args);
/** An exec-form argument list (a JSON array); shell form would put `sh -c` in front of node. */
const execForm = (args: string): string[] => {
  expect(args, 'exec form: a JSON array').toMatch(/^\[.*\]$/);
  return JSON.parse(args) as string[];
};
/** The image's ENV, as `docker run` starts with it. */
const kImageEnv: Record<string, string> = Object.fromEntries(instruction('ENV').flatMap((args) =>
  [...args.matchAll(/(\w+)=(\S+)/g)].map(([, name, value]) => [name!, value!])));
const kExposed = instruction('EXPOSE').flatMap((args) => args.split(/\s+/)).map((p) => Number(p.replace(/\/tcp$/, ''))).sort();

/** GatewayOptions for the FLEETGATE_* variables in `env`, so that a test gateway runs what the env describes. */
const optionsOf = (env: Record<string, string>): GatewayOptions => Object.fromEntries(
  (Object.keys(kSettings) as SettingKey[]).filter((key) => env[kSettings[key].env] !== undefined).map((key) => [key, env[kSettings[key].env]]));

describe('Dockerfile', () => {
  it('exposes the port of every listener the image can start (HTTP, HTTPS, MQTT, MQTTS)', () => {
    const config = loadConfig({}, kImageEnv);
    expect(kExposed).toEqual([config.httpPort, config.httpsPort, config.mqttPort, config.mqttsPort].sort());
    expect(config.host, 'listeners reachable through published ports').toBe('0.0.0.0');
  });

  it('docs/DOCKER.md\'s docker run line publishes every exposed port', () => {
    const line = readFileSync(join(kRoot, 'docs/DOCKER.md'), 'utf8').split('\n').find((l) => l.startsWith('docker run '))!;
    expect([...line.matchAll(/-p (\d+):(\d+)/g)].map(([, , inside]) => Number(inside)).sort()).toEqual(kExposed);
  });

  describe('HEALTHCHECK', () => {
    let pki: TestPki;
    const dir = mkdtempSync(join(tmpdir(), 'fleetgate-docker-'));
    beforeAll(() => (pki = makePki()));
    afterAll(() => {
      cleanupPki(pki);
      rmSync(dir, { recursive: true, force: true });
    });
    const healthcheck = (env: Record<string, string>) => {
      const [, command = ''] = /^(?:--\S+\s+)*CMD\s+(.*)$/.exec(instruction('HEALTHCHECK')[0]!)!;
      // As Docker runs it: exec form as is, shell form through /bin/sh -c.
      const argv = command.startsWith('[') ? execForm(command) : ['/bin/sh', '-c', command];
      // cwd: the image's WORKDIR holds what the repository root holds.
      return run('sh', ['-c', 'cd "$0" && exec "$@"', kRoot, ...argv], { env: { PATH: process.env.PATH!, ...kImageEnv, ...env } });
    };

    it.each([
      ['plain HTTP (the default)', () => ({})],
      ['FLEETGATE_PLAIN=off: HTTPS only, uWS terminating TLS', () => ({ FLEETGATE_PLAIN: 'off', FLEETGATE_TLS_CERT: pki.serverCert, FLEETGATE_TLS_KEY: pki.serverKey })],
      ['FLEETGATE_PLAIN=off, client certificates required (x509-only)', () => ({
        FLEETGATE_PLAIN: 'off', FLEETGATE_TLS_CERT: pki.serverCert, FLEETGATE_TLS_KEY: pki.serverKey, FLEETGATE_TLS_CLIENT_CA: pki.ca, FLEETGATE_TLS_CLIENT_AUTH: 'required',
      })],
    ])('passes while a gateway runs, fails once it stopped: %s', async (_mode, modeEnv) => {
      const env: Record<string, string> = {
        ...kImageEnv, FLEETGATE_HOST: '127.0.0.1', FLEETGATE_HTTP_PORT: String(await freePort()), FLEETGATE_HTTPS_PORT: String(await freePort()),
        FLEETGATE_MQTT_PORT: '0', FLEETGATE_MQTTS_PORT: '0', FLEETGATE_STORE: `sqlite:${join(dir, 'fleetgate.db')}`, ...modeEnv(),
      };
      const gw = await startGateway(optionsOf(env));
      let stopped = false;
      try {
        const up = await healthcheck(env);
        expect(up.code, up.stderr).toBe(0);
        await gw.close();
        stopped = true;
        const down = await healthcheck(env);
        expect(down.code).toBe(1);
        expect(down.stderr).toMatch(/^healthcheck: .*ECONNREFUSED/);
      } finally {
        if (!stopped) await gw.close();
      }
    });
  });

  it('runs node as PID 1 (exec form), which stops gracefully on docker stop\'s SIGTERM', async () => {
    expect(instruction('STOPSIGNAL').at(-1) ?? 'SIGTERM').toBe('SIGTERM');
    const argv = [...execForm(instruction('ENTRYPOINT').at(-1)!), ...execForm(instruction('CMD').at(-1)!)];
    expect(argv[0]).toBe('node');
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'fleetgate-pid1-'));
    const env = { ...process.env, ...kImageEnv, FLEETGATE_HOST: '127.0.0.1', FLEETGATE_HTTP_PORT: String(port), FLEETGATE_MQTT_PORT: '0', FLEETGATE_STORE: `sqlite:${join(dir, 'fleetgate.db')}` };
    // A new PID namespace, as a container has: the entrypoint is its PID 1, which gets no default signal action
    // (a SIGTERM without a handler would be ignored, and docker would SIGKILL after its stop timeout).
    const user = process.getuid!() === 0 ? [] : ['--user', '--map-root-user'];
    const container = spawnLogged('unshare', [...user, '--pid', '--fork', '--kill-child', ...argv], { cwd: kRoot, env });
    try {
      await healthy(port);
      const [pid1] = descendants(container.child.pid!);
      expect(readFileSync(`/proc/${pid1}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
      process.kill(pid1!, 'SIGTERM');
      expect(await container.exited).toBe(0);
      expect(container.log()).toContain('"signal":"SIGTERM","msg":"shutting down"');
      expect(container.log()).toContain('"msg":"stopped"');
    } finally {
      container.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
