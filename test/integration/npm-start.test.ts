import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { http } from '../helpers/clients.ts';
import { freePort } from '../helpers/gateway.ts';

// `npm start` as a user runs it (npm test builds dist/ first): npm runs the script through `sh -c`, and forwards
// SIGTERM and SIGINT to that child only (@npmcli/run-script's signal manager). Its `exec` makes the child the gateway.
const kRoot = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-npm-start-'));
const started: number[] = [];
afterAll(() => {
  // A gateway this test orphaned must not outlive it.
  for (const pid of started) try { process.kill(pid, 'SIGKILL'); } catch { /* gone, as it should be */ }
  rmSync(dir, { recursive: true, force: true });
});

/** Every process below `pid` (Linux /proc): npm's `sh -c`, and the gateway. */
function descendants(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter((s) => s !== '').map(Number));
  return children.flatMap((child) => [child, ...descendants(child)]);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

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
    const npm = spawn('npm', ['start'], { cwd: kRoot, env, detached: true });
    let log = '';
    npm.stdout.on('data', (d) => (log += d));
    npm.stderr.on('data', (d) => (log += d));
    onTestFailed(() => console.log('npm start log:\n' + log));
    const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
    await expect.poll(() => http('GET', `http://127.0.0.1:${port}/health`).then((r) => r.status, () => 0), { timeout: 15_000 }).toBe(200);
    const below = descendants(npm.pid!);
    started.push(...below);

    if (to.startsWith('the npm process')) npm.kill(signal);
    else process.kill(-npm.pid!, signal);
    expect(await exited).toBe(0);
    expect(below.filter(alive), 'processes npm started that outlive it').toEqual([]);
    await expect(http('GET', `http://127.0.0.1:${port}/health`)).rejects.toThrow();
    expect(log).toContain(`"signal":"${signal}","msg":"shutting down"`);
    expect(log).toContain('"msg":"stopped"');
  });
});
