import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { http } from '../helpers/clients.ts';
import { freePort } from '../helpers/gateway.ts';
import { alive, descendants, healthy, spawnLogged } from '../helpers/processes.ts';

// `npm start` as a user runs it (npm test builds dist/ first): npm runs the script through `sh -c`, and forwards
// SIGTERM and SIGINT to that child only (@npmcli/run-script's signal manager). Its `exec` makes the child the gateway.
const kRoot = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-npm-start-'));
const started: number[] = [];
afterAll(() => {
  // A gateway this test orphaned must not outlive it.
  for (const pid of started.filter(alive)) process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('npm start', () => {
  it.each([
    ['SIGTERM', 'the npm process (a service manager, kill)'],
    ['SIGINT', 'the process group (Ctrl-C in a terminal)'],
  ] as const)('stops the gateway gracefully on %s to %s, freeing its port', async (signal, to) => {
    const port = await freePort();
    const env = {
      ...process.env, npm_config_update_notifier: 'false', FLEETGATE_HOST: '127.0.0.1', FLEETGATE_HTTP_PORT: String(port), FLEETGATE_MQTT_PORT: '0',
      FLEETGATE_STORE: `sqlite:${join(dir, signal, 'fleetgate.db')}`, FLEETGATE_SHUTDOWN_TIMEOUT: '3000',
    };
    // Its own process group, as a terminal gives a foreground job.
    const npm = spawnLogged('npm', ['start'], { cwd: kRoot, env, detached: true });
    await healthy(port);
    const below = descendants(npm.child.pid!);
    started.push(...below);

    if (to.startsWith('the npm process')) npm.child.kill(signal);
    else process.kill(-npm.child.pid!, signal);
    expect(await npm.exited).toBe(0);
    expect(below.filter(alive), 'processes npm started that outlive it').toEqual([]);
    await expect(http('GET', `http://127.0.0.1:${port}/health`)).rejects.toThrow();
    // Free: another server can listen on it now.
    await new Promise((resolve, reject) => {
      const server = createServer().once('error', reject).listen(port, '127.0.0.1', () => server.close(resolve));
    });
    expect(npm.log()).toContain(`"signal":"${signal}","msg":"shutting down"`);
    expect(npm.log()).toContain('"msg":"stopped"');
  });
});
