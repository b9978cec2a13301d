import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createAudit, kAuditRefusalsPerSecond } from '../../src/audit.ts';
import { fail } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function files() {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-audit-unit-'));
  dirs.push(dir);
  return { audit: join(dir, 'audit.log'), main: join(dir, 'main.log') };
}
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
const refused = { protocol: 'http', remote: '192.0.2.1', credential: 'secret', result: fail('FG_ERR_AUTHN_INVALID') } as const;

describe('audit', () => {
  it(`writes at most ${kAuditRefusalsPerSecond} refusals a second, then says how many it left out`, () => {
    const path = files();
    const audit = createAudit(path.audit, createLogger('info', pino.destination({ dest: path.main, sync: true })));
    for (let i = 0; i < kAuditRefusalsPerSecond + 5; i++) audit.authn(refused);
    audit.close();
    const events = lines(path.audit);
    expect(events.filter((e) => e.event === 'authn')).toHaveLength(kAuditRefusalsPerSecond);
    expect(events.at(-1)).toMatchObject({ event: 'suppressed', count: 5 });
    // The main log gets the same refusals, bounded the same way.
    expect(lines(path.main).filter((e) => e.result === 'refused')).toHaveLength(kAuditRefusalsPerSecond);
  });

  it('with FLEETGATE_AUDIT_LOG=off still logs refusals at info in the main log, and nothing else', () => {
    const path = files();
    const audit = createAudit('off', createLogger('info', pino.destination({ dest: path.main, sync: true })));
    audit.authn(refused);
    audit.authn({ ...refused, result: 'ok', kind: 'client', id: 'c1' });
    audit.change({ op: 'client.create', ids: { client_id: 'c1' } });
    expect(lines(path.main)).toEqual([expect.objectContaining({ level: 30, protocol: 'http', remote: '192.0.2.1', code: 'FG_ERR_AUTHN_INVALID', msg: 'authentication refused' })]);
  });

  it('names the actor of a change: the one of the current as() scope, else the default', async () => {
    const path = files();
    const audit = createAudit(path.audit, undefined, { defaultActor: 'cli' });
    await audit.as('admin-1', async () => {
      await Promise.resolve();
      audit.change({ op: 'domain.create', ids: { domain_id: 'd1' } });
    });
    audit.change({ op: 'keys.rotate', ids: { kid: 'k1' } });
    expect(lines(path.audit).map((e) => [e.actor, e.op])).toEqual([['admin-1', 'domain.create'], ['cli', 'keys.rotate']]);
  });
});
