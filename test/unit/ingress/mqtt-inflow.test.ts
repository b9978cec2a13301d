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

describe('ingress/mqtt-inflow', () => {
  it('hands the broker small bites of a large chunk, in order', async () => {
    const bytes = Buffer.concat(Array.from({ length: 400 }, () => publish(100)));
    const { conn } = connection();
    const inflow = new MqttInflow(conn);
    const bites: Buffer[] = [];
    inflow.on('data', (d: Buffer) => bites.push(d));
    conn.push(bytes);
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(bites).equals(bytes)).toBe(true);
    expect(Math.max(...bites.map((b) => b.length))).toBeLessThanOrEqual(2048);
  });

  it('writes through to the connection', async () => {
    const { conn, sent } = connection();
    const inflow = new MqttInflow(conn);
    await new Promise<void>((resolve) => inflow.write(Buffer.from('abc'), () => resolve()));
    expect(Buffer.concat(sent).toString()).toBe('abc');
  });
});
