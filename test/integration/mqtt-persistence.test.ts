import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { openLocalState } from '../../src/mqtt-persistence/open.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'fleetgate-mqtt-state-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('aedes-persistence abstract suite', () => {
  // aedes-memory is aedes-persistence's own implementation: it passing proves the harness.
  it.each(['aedes-memory', 'memory', 'sqlite'])('passes every test against %s', async (kind) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/fixtures/persistence-abstract.ts'], {
      env: { ...process.env, FLEETGATE_TEST_PERSISTENCE: kind }, maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { stdout: string }) => err);
    const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(stdout)?.[1] ?? -1);
    if (count('fail') !== 0) console.log(stdout.split('\n').filter((line) => /^\s*not ok|error:|expected|actual/.test(line)).join('\n'));
    expect({ tests: count('tests'), pass: count('pass'), fail: count('fail') }).toEqual({ tests: 48, pass: 48, fail: 0 });
  }, 120_000);
});

/** The SQLite persistence on a file, with no queue limit. */
const openAt = (path: string) => openLocalState({ mqttPersistence: `sqlite:${path}`, store: '', mqttMaxQueued: 0 });

/** A new file under `name`, opened, as broker `brokerId` sees it. */
async function fresh(name: string, brokerId: string) {
  const path = join(dir, name, 'mqtt.db');
  const state = openAt(path);
  await state.setup({ id: brokerId });
  return { path, state, client: { id: 'device-1' } };
}

const packet = (topic: string, payload: string, extra: object = {}) => ({
  cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, brokerId: 'b1', brokerCounter: 1, ...extra,
});

describe('sqlite MQTT state', () => {
  it('is there again after a reopen: retained, subscriptions, queued and in-flight messages (DUP set), wills, sessions', async () => {
    const { path, state: first, client } = await fresh('reopen', 'b1');
    await first.storeRetained({ ...packet('m/d/c/c1', 'kept', { retain: true, properties: { contentType: 'x' }, messageExpiry: 123 }) });
    await first.addSubscriptions(client, [{ topic: 'm/d/c/c1/#', qos: 1 }, { topic: 'm/d/c/c2', qos: 0 }]);
    await first.outgoingEnqueueCombi([{ clientId: client.id }], packet('m/d/c/c1', 'sent', { brokerCounter: 1 }));
    await first.outgoingEnqueueCombi([{ clientId: client.id }], packet('m/d/c/c1', 'queued', { brokerCounter: 2 }));
    await first.outgoingUpdate(client, { ...packet('m/d/c/c1', 'sent', { brokerCounter: 1 }), messageId: 7 });
    await first.putWill(client, packet('m/d/c/c1', 'gone'));
    first.sessionOnline(client.id, 60);
    await first.destroy();
    expect(statSync(path).mode & 0o777).toBe(0o600);

    const second = openAt(path);
    await second.setup({ id: 'b2' });
    const [retained] = await second.createRetainedStream('m/#').toArray();
    expect(retained).toMatchObject({ topic: 'm/d/c/c1', payload: Buffer.from('kept'), properties: { contentType: 'x' }, messageExpiry: 123 });
    expect(await second.subscriptionsByClient(client)).toEqual([{ topic: 'm/d/c/c1/#', qos: 1 }, { topic: 'm/d/c/c2', qos: 0 }]);
    expect(second.matches('m/d/c/c1/x')).toBe(true);
    expect(second.matches('m/d/c/c2')).toBe(false);
    const queue = await second.outgoingStream(client).toArray();
    expect(queue.map((p) => [p.payload.toString(), p.messageId, p.dup])).toEqual([['sent', 7, true], ['queued', undefined, false]]);
    expect(second.queued).toBe(2);
    expect((await second.getWill(client))?.payload).toEqual(Buffer.from('gone'));
    expect(second.sessions.get(client.id)).toEqual({ interval: 60, expiresAt: 0 });
    await second.destroy();
  });

  it('stores a packet aedes replaced by its own (a PUBREL, a PUBLISH with a write callback), and the rest of that turn', async () => {
    const { path, state: first, client } = await fresh('replaced', 'b2');
    // queued by the broker before a restart (b1), with packet id 7; the new broker (b2) gives 7 to another message
    await first.outgoingEnqueueCombi([{ clientId: client.id }], packet('t', 'old', { brokerId: 'b1' }));
    await first.outgoingUpdate(client, { ...packet('t', 'old', { brokerId: 'b1' }), messageId: 7 });
    await first.outgoingUpdate(client, { ...packet('t', 'new', { brokerId: 'b2' }), messageId: 7, writeCallback: () => {} });
    await first.storeRetained(packet('r', 'kept', { retain: true }));
    await first.destroy();
    const second = openAt(path);
    expect((await second.outgoingStream(client).toArray()).map((p) => p.payload.toString())).toEqual(['new']);
    expect(second.retained.size).toBe(1);
    await second.destroy();
  });

  it('writes nothing for a message queued, sent and acknowledged within one turn', async () => {
    const { path, state, client } = await fresh('collapse', 'b1');
    // another connection sees data_version change when anything is committed
    const reader = new Database(path, { readonly: true });
    const version = () => reader.pragma('data_version', { simple: true });
    const before = version();
    const enqueued = state.outgoingEnqueueCombi([{ clientId: client.id }], packet('t', 'p'));
    const updated = state.outgoingUpdate(client, { ...packet('t', 'p'), messageId: 1 });
    const cleared = state.outgoingClearMessageId(client, { messageId: 1 });
    await Promise.all([enqueued, updated, cleared]);
    expect(version()).toBe(before);
    reader.close();
    await state.destroy();
  });
});
