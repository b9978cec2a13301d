import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/clients.ts';

// `npm test`'s pretest: the Debian packages the tests run, installed when it can, else the one line to run.
const kScript = join(import.meta.dirname, '../../scripts/ensure-packages.sh');
const kPackages = /^kTestPackages='([^']*)'$/m.exec(readFileSync(kScript, 'utf8'))![1]!.split(' ');

/** The script as a user who cannot install packages (`nobody` when the tests run as root, as CI does). */
const asUser = (...args: string[]) => process.getuid!() === 0
  ? run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', kScript, ...args])
  : run('sh', [kScript, ...args]);

describe('scripts/ensure-packages.sh', () => {
  it('stops at once with exit 1 and the apt-get line to run when a package is missing and it cannot install', async () => {
    const res = await asUser('fleetgate-no-such-package');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('  apt-get update && apt-get install -y --no-install-recommends fleetgate-no-such-package\n');
  });

  it('passes quietly when every package is installed', async () => {
    expect(await asUser()).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it.each(['curl', 'mosquitto_pub', 'mosquitto_sub', 'openssl', 'make', 'nats-server', 'redis-server', 'haproxy'])('lists the package that provides %s, a command the tests run', (command) => {
    // dpkg -S answers "package: /usr/bin/x"; with merged /usr a file may be registered under /bin instead.
    const owner = spawnSync('sh', ['-c', `p=$(command -v ${command}) && { dpkg -S "$p" || dpkg -S "\${p#/usr}"; }`], { encoding: 'utf8' }).stdout;
    expect(kPackages).toContain(owner.split(':')[0]);
  });
});
