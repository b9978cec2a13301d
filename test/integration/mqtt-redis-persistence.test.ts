import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/clients.ts';
import { startRedis, type ServerProcess } from '../helpers/servers.ts';

/** aedes-persistence's own abstract suite against the Redis persistence, on a real redis-server. */
let redis: ServerProcess;
beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterAll(async () => redis?.close());

describe('Redis MQTT persistence', () => {
  it('passes aedes-persistence\'s abstract suite', async () => {
    const suite = fileURLToPath(new URL('../fixtures/redis-persistence-abstract.ts', import.meta.url));
    const { code, stdout, stderr } = await run(process.execPath, ['--import', 'tsx', '--test-reporter=tap', suite], {
      env: { ...process.env, FLEETGATE_TEST_REDIS: redis.url },
    });
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)`, 'm').exec(stdout)?.[1]);
    expect({ code, fail: count('fail'), stderr: code === 0 ? '' : stderr + stdout.slice(-4000) }).toEqual({ code: 0, fail: 0, stderr: '' });
    expect(count('pass')).toBeGreaterThanOrEqual(48);
  }, 300_000);
});
