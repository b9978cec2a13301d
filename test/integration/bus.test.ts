import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeEnvelope } from '../../src/bus/envelope.ts';
import type { Bus } from '../../src/bus/bus.ts';
import { natsBus } from '../../src/bus/nats.ts';
import { subjectOf } from '../../src/bus/subject.ts';
import type { Message } from '../../src/types.ts';
import { startNats, type ServerProcess } from '../helpers/servers.ts';
import { until } from '../helpers/until.ts';

const logger = pino({ level: 'silent' });
const message = (n: number, subtopic: string | null = null, channelId = 'ch-1'): Message => ({
  domainId: 'dom-1', channelId, subtopic, publisher: 'client-1', protocol: 'http', created: 1_765_000_000_000 + n, payload: Buffer.from(`[{"n":"t","v":${n}}]`),
});

describe('bus envelope and subjects', () => {
  it('round-trips a message through the msgpack envelope, created in Unix nanoseconds', () => {
    const m = message(1, 'a/b');
    expect(decodeEnvelope(encodeEnvelope(m))).toEqual({ ...m, payload: new Uint8Array(m.payload) });
  });

  it('carries the accepting MQTT broker\'s id, counter, QoS and retain flag when it has them', () => {
    const m = { ...message(1), mqtt: { broker: 'b-1', counter: 42, qos: 1 as const, retain: true } };
    expect(decodeEnvelope(encodeEnvelope(m))).toEqual({ ...m, payload: new Uint8Array(m.payload) });
    // a malformed origin is dropped, the message kept
    const bad = decodeEnvelope(encodeEnvelope({ ...message(1), mqtt: { broker: 'b-1', counter: 0, qos: 1, retain: true } }));
    expect(bad).toBeDefined();
    expect(bad!.mqtt).toBeUndefined();
  });

  it('refuses bytes that are not an envelope instead of throwing', () => {
    expect(decodeEnvelope(Buffer.from('not msgpack at all \xc1'))).toBeUndefined();
    expect(decodeEnvelope(encodeEnvelope({ ...message(1), protocol: 'smtp' as never }))).toBeUndefined();
  });

  it.each([
    [null, 'm.D.c.C'],
    ['a', 'm.D.c.C.a'],
    ['a/b/c', 'm.D.c.C.a.b.c'],
    ['v1.2/x', 'm.D.c.C.v1%2E2.x'],
    ['50%/y', 'm.D.c.C.50%25.y'],
  ])('subtopic %s travels on %s (one NATS token per MQTT level)', (subtopic, subject) => {
    expect(subjectOf('D', 'C', subtopic)).toBe(subject);
  });
});

describe('NATS bus between two instances', () => {
  let nats: ServerProcess;
  let a: Bus;
  let b: Bus;
  const atA: Message[] = [];
  const atB: Message[] = [];
  let droppedA = 0;

  beforeAll(async () => {
    nats = await startNats();
    a = natsBus({ url: nats.url, name: 'a', logger, sent: () => {}, dropped: () => droppedA++ }, (m) => atA.push(m));
    b = natsBus({ url: nats.url, name: 'b', logger, sent: () => {}, dropped: () => {} }, (m) => atB.push(m));
    await Promise.all([a.start(), b.start()]);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await nats?.close();
  });

  it('delivers to the instance that wants the channel, in order, and never back to the publisher', async () => {
    b.want('ch-1');
    a.want('ch-1');
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 100; i++) a.publish(message(i, i % 2 === 0 ? null : `s/${i}`));
    await until(() => atB.length === 100);
    expect(atB.map((m) => m.created - 1_765_000_000_000)).toEqual([...Array(100).keys()]);
    expect(atB[1]!.subtopic).toBe('s/1');
    await new Promise((r) => setTimeout(r, 100));
    expect(atA).toHaveLength(0);
  });

  it('hands broker signals to every other instance, in order, never back to the sender', async () => {
    const signalsA: string[] = [];
    const signalsB: string[] = [];
    a.onSignal((bytes) => signalsA.push(Buffer.from(bytes).toString()));
    b.onSignal((bytes) => signalsB.push(Buffer.from(bytes).toString()));
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 10; i++) a.signal(Buffer.from(`s${i}`));
    await until(() => signalsB.length === 10);
    expect(signalsB).toEqual([...Array(10).keys()].map((i) => `s${i}`));
    await new Promise((r) => setTimeout(r, 100));
    expect(signalsA).toHaveLength(0);
  });

  it('stops delivering a channel once its last local subscriber is gone', async () => {
    b.want('ch-2');
    b.want('ch-2');
    b.unwant('ch-2');
    await new Promise((r) => setTimeout(r, 100));
    atB.length = 0;
    a.publish(message(1, null, 'ch-2'));
    await until(() => atB.length === 1);
    b.unwant('ch-2');
    await new Promise((r) => setTimeout(r, 100));
    a.publish(message(2, null, 'ch-2'));
    a.publish(message(3, null, 'ch-1'));
    await until(() => atB.length === 2);
    expect(atB[1]!.channelId).toBe('ch-1');
  });

  it('counts messages as dropped while the server is down, and resumes by itself when it is back', async () => {
    await nats.kill();
    await until(() => !a.connected && !b.connected, 15_000);
    const before = droppedA;
    a.publish(message(7));
    expect(droppedA).toBe(before + 1);
    await nats.restart();
    await until(() => a.connected && b.connected, 15_000);
    await new Promise((r) => setTimeout(r, 200));
    atB.length = 0;
    a.publish(message(8));
    await until(() => atB.length === 1);
    expect(atB[0]!.created).toBe(1_765_000_000_008);
  }, 40_000);
});
