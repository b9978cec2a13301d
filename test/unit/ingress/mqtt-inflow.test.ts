import { Duplex } from 'node:stream';
import { generate } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { MqttInflow } from '../../../src/ingress/mqtt-inflow.ts';

/** A connection whose incoming bytes the test pushes and whose outgoing bytes it collects. */
function connection() {
  const sent: Buffer[] = [];
  const conn = new Duplex({
    read() {},
    write(chunk: Buffer, _e, done) {
      sent.push(chunk);
      done();
    },
  });
  return { conn, sent };
}

const publish = (size: number) => generate({ cmd: 'publish', topic: 'm/d/c/c', payload: Buffer.alloc(size, 1), qos: 0, dup: false, retain: false });

/** Feeds `bytes` in chunks of `step`; resolves with what passed through and whether the guard ended the connection. */
async function feed(max: number, bytes: Buffer, step: number) {
  const { conn } = connection();
  const guard = new MqttInflow(conn, max);
  const passed: Buffer[] = [];
  let error: Error | undefined;
  guard.on('data', (d: Buffer) => passed.push(d));
  guard.on('error', (e) => (error = e));
  for (let i = 0; i < bytes.length; i += step) conn.push(bytes.subarray(i, i + step));
  await new Promise((r) => setImmediate(r));
  return { passed: Buffer.concat(passed), error, destroyed: conn.destroyed };
}

describe('ingress/mqtt-inflow', () => {
  it.each([1, 2, 3, 7, 64, 100_000])('passes packets under the limit untouched, fed %i bytes at a time', async (step) => {
    const bytes = Buffer.concat([publish(10), publish(200), publish(20_000), generate({ cmd: 'pingreq' }), publish(0)]);
    const { passed, error } = await feed(30_000, bytes, step);
    expect(error).toBeUndefined();
    expect(passed.equals(bytes)).toBe(true);
  });

  it.each([1, 5, 4096])('ends the connection at the header of a packet over the limit (fed %i at a time)', async (step) => {
    const bytes = Buffer.concat([publish(10), publish(50_000)]);
    const { error, destroyed, passed } = await feed(30_000, bytes, step);
    expect(error?.message).toContain('larger than 30000 bytes');
    expect(destroyed).toBe(true);
    // Nothing of the oversize packet's body got through.
    expect(passed.length).toBeLessThan(publish(10).length + 8);
  });

  it('refuses a Remaining Length of more than four bytes [MQTT-2.2.3]', async () => {
    const { error } = await feed(Number.MAX_SAFE_INTEGER, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 1);
    expect(error).toBeDefined();
  });

  it('hands the broker small bites of a large chunk, in order', async () => {
    const bytes = Buffer.concat(Array.from({ length: 400 }, () => publish(100)));
    const { conn } = connection();
    const inflow = new MqttInflow(conn, 1 << 20);
    const bites: Buffer[] = [];
    inflow.on('data', (d: Buffer) => bites.push(d));
    conn.push(bytes);
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(bites).equals(bytes)).toBe(true);
    expect(Math.max(...bites.map((b) => b.length))).toBeLessThanOrEqual(2048);
  });

  it('writes through to the connection', async () => {
    const { conn, sent } = connection();
    const guard = new MqttInflow(conn, 100);
    await new Promise<void>((resolve) => guard.write(Buffer.from('abc'), () => resolve()));
    expect(Buffer.concat(sent).toString()).toBe('abc');
  });
});
