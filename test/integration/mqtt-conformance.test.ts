import { connect as tcp, type Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { generate, parser, type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';

// MQTT 5 conformance found by outside testing (issue 15): Paho's interoperability suite and mosquitto's behaviour.
let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let both: TestClient;
const open: MqttClient[] = [];

beforeAll(async () => {
  gw = await startGateway();
  fleet = await provisionFleet(gw.gateway, { format: 'raw' });
  both = await fleet.client('both', ['publish', 'subscribe']);
});
afterAll(async () => {
  for (const c of open) c.end(true);
  await gw.close();
});

/** MQTT.js as `both`, MQTT 5 unless told: resolves once connected, with its CONNACK; `ready` runs before CONNECT. */
function connectAck(options: mqtt.IClientOptions, ready: (client: MqttClient) => void = () => undefined): Promise<[MqttClient, { sessionPresent: boolean }]> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, {
      protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, username: both.id, password: both.secret, manualConnect: true, ...options,
    });
    open.push(client);
    client.once('connect', (connack) => resolve([client, connack]));
    client.once('error', reject);
    ready(client);
    client.connect();
  });
}
const connect = async (options: mqtt.IClientOptions) => (await connectAck(options))[0];
const ended = (client: MqttClient) => new Promise<void>((resolve) => (client.connected ? client.end(false, {}, () => resolve()) : resolve()));
const varint = (n: number): number[] => {
  const bytes: number[] = [];
  do {
    bytes.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return bytes;
};
const settle = () => new Promise((r) => setTimeout(r, 200));

/** A raw MQTT connection: every packet it receives, parsed, and whether the server closed it. */
function raw(protocolVersion: 4 | 5, properties?: Record<string, unknown>, connect: Record<string, unknown> = {}) {
  const socket: Socket = tcp(gw.gateway.mqttPort!, '127.0.0.1');
  const received: Packet[] = [];
  const state = { closed: false };
  const p = parser({ protocolVersion });
  p.on('packet', (packet) => received.push(packet));
  socket.on('data', (d) => p.parse(d));
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => undefined);
  const send = (packet: Buffer | Record<string, unknown>) => socket.write(Buffer.isBuffer(packet) ? packet : generate(packet as never, { protocolVersion }));
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, clientId: `raw-${Math.random()}`, keepalive: 30, username: both.id, password: Buffer.from(both.secret), ...(properties && { properties }), ...connect });
  return { socket, received, state, send, cmds: () => received.map((packet) => packet.cmd) };
}

describe('MQTT 5 sessions resumed without a Session Expiry Interval', () => {
  it('delivers the queued QoS 1 messages of a session resumed with clean:false and no Session Expiry (it then ends with the connection)', async () => {
    const topic = `${fleet.topic}/queued`;
    const first = await connect({ clientId: 'resumed', clean: true, properties: { sessionExpiryInterval: 3600 } });
    await first.subscribeAsync(topic, { qos: 1 });
    await ended(first);
    const publisher = await connect({ clientId: 'resumed-pub' });
    for (const n of [1, 2, 3]) await publisher.publishAsync(topic, `q${n}`, { qos: 1 });

    const received: string[] = [];
    const [again, connack] = await connectAck({ clientId: 'resumed', clean: false }, (client) => client.on('message', (_t, payload) => received.push(payload.toString())));
    expect(connack.sessionPresent).toBe(true);
    await expect.poll(() => received).toEqual(['q1', 'q2', 'q3']);
    await ended(again);

    // Its expiry was 0: the session ended with that connection.
    const [, last] = await connectAck({ clientId: 'resumed', clean: false });
    expect(last.sessionPresent).toBe(false);
  });
});

describe('malformed packets end the connection', () => {
  /** A PUBLISH whose topic is `prefix` then the raw bytes `tail` (QoS 1, packet id 7, no properties for MQTT 5). */
  const publishWithTopicBytes = (prefix: string, tail: number[], protocolVersion: 4 | 5) => {
    const topic = Buffer.concat([Buffer.from(prefix), Buffer.from(tail)]);
    const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.from([0, 7]), Buffer.from(protocolVersion === 5 ? [0] : []), Buffer.from('x')]);
    return Buffer.concat([Buffer.from([0x32, body.length]), body]);
  };

  it('a PUBLISH topic with invalid UTF-8 or U+0000 gets DISCONNECT 0x81 [MQTT-1.5.4-1/2], as mosquitto; nothing is delivered', async () => {
    const watcher = await connect({ clientId: 'utf8-watcher' });
    const seen: string[] = [];
    watcher.on('message', (topic) => seen.push(topic));
    await watcher.subscribeAsync(`${fleet.topic}/#`);
    for (const tail of [[0xc3, 0x28], [0x00]]) {
      const conn = raw(5);
      await expect.poll(conn.cmds).toEqual(['connack']);
      conn.send(publishWithTopicBytes(`${fleet.topic}/`, tail, 5));
      await expect.poll(() => conn.state.closed).toBe(true);
      expect(conn.received).toMatchObject([{ cmd: 'connack' }, { cmd: 'disconnect', reasonCode: 0x81, properties: { reasonString: 'FG_ERR_REQUEST_INVALID: topic holds U+0000 or invalid UTF-8' } }]);
    }
    const conn = raw(4);
    await expect.poll(conn.cmds).toEqual(['connack']);
    conn.send(publishWithTopicBytes(`${fleet.topic}/`, [0xc3, 0x28], 4));
    await expect.poll(() => conn.state.closed).toBe(true);
    expect(conn.cmds()).toEqual(['connack']);
    await settle();
    expect(seen).toEqual([]);
  });
  it('packet identifier 0, a Session Expiry property outside CONNECT/DISCONNECT, a Subscription Identifier in a PUBLISH, a PUBLISH cut before its property length: MQTT 5 DISCONNECT 0x82/0x81 saying why, 3.1.1 closed', async () => {
    const topic = Buffer.from(`${fleet.topic}/rules`);
    const str = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic]);
    const frame = (first: number, ...parts: Buffer[]) => {
      const body = Buffer.concat(parts);
      return Buffer.concat([Buffer.from([first, ...varint(body.length)]), body]);
    };
    const sessionExpiry = Buffer.from([5, 0x11, 0, 0, 0, 10]);
    const cases: [string, 4 | 5, Buffer, number?, string?][] = [
      ['PUBLISH QoS 1 id 0', 5, frame(0x32, str, Buffer.from([0, 0, 0]), Buffer.from('x')), 0x82, 'packet identifier 0'],
      ['SUBSCRIBE id 0', 5, frame(0x82, Buffer.from([0, 0, 0]), str, Buffer.from([1])), 0x82, 'packet identifier 0'],
      ['UNSUBSCRIBE id 0', 5, frame(0xa2, Buffer.from([0, 0, 0]), str), 0x82, 'packet identifier 0'],
      ['PUBLISH with Session Expiry', 5, frame(0x30, str, sessionExpiry, Buffer.from('x')), 0x82, 'sessionExpiryInterval in PUBLISH'],
      ['SUBSCRIBE with Session Expiry', 5, frame(0x82, Buffer.from([0, 1]), sessionExpiry, str, Buffer.from([1])), 0x82, 'sessionExpiryInterval in SUBSCRIBE'],
      ['UNSUBSCRIBE with Session Expiry', 5, frame(0xa2, Buffer.from([0, 1]), sessionExpiry, str), 0x82, 'sessionExpiryInterval in UNSUBSCRIBE'],
      // [MQTT-3.3.4-6] a client's PUBLISH carries no Subscription Identifier
      ['PUBLISH with a Subscription Identifier', 5, frame(0x30, str, Buffer.from([2, 0x0b, 1]), Buffer.from('x')), 0x82, 'subscriptionIdentifier in PUBLISH'],
      ['PUBLISH cut before its property length', 5, frame(0x30, str), 0x81, 'no property length'],
      ['3.1.1 PUBLISH QoS 1 id 0', 4, frame(0x32, str, Buffer.from([0, 0]), Buffer.from('x'))],
      ['3.1.1 SUBSCRIBE id 0', 4, frame(0x82, Buffer.from([0, 0]), str, Buffer.from([1]))],
    ];
    for (const [name, version, packet, reasonCode, reasonString] of cases) {
      const conn = raw(version);
      await expect.poll(conn.cmds).toEqual(['connack']);
      conn.send(packet);
      await expect.poll(() => [name, conn.state.closed]).toEqual([name, true]);
      if (reasonCode === undefined) expect(conn.cmds(), name).toEqual(['connack']);
      else expect(conn.received, name).toMatchObject([{ cmd: 'connack' }, { cmd: 'disconnect', reasonCode, properties: { reasonString } }]);
    }
    // The same packets, well formed, are served.
    const conn = raw(5);
    conn.send(frame(0x82, Buffer.from([0, 1, 0]), str, Buffer.from([1])));
    conn.send(frame(0x32, str, Buffer.from([0, 2, 0]), Buffer.from('x')));
    await expect.poll(() => conn.cmds().sort()).toEqual(['connack', 'puback', 'publish', 'suback']);
    conn.socket.destroy();
  });
});

describe('$ topics', () => {
  it('MQTT 3.1.1: a PUBLISH to a $ topic is acknowledged and dropped, as mosquitto does with $SYS; the connection stays', async () => {
    const watcher = await connect({ clientId: 'dollar-watcher' });
    const seen: string[] = [];
    watcher.on('message', (topic) => seen.push(topic));
    await watcher.subscribeAsync(`${fleet.topic}/#`);
    const client = await connect({ clientId: 'dollar-311', protocolVersion: 4 });
    for (const topic of ['$SYS/broker/x', '$TopicA/B']) await client.publishAsync(topic, 'x', { qos: 1 });
    expect(client.connected).toBe(true);
    await client.publishAsync(`${fleet.topic}/after`, 'ok', { qos: 1 });
    await expect.poll(() => seen).toEqual([`${fleet.topic}/after`]);
  });
});

describe('in-flight window: MQTT 5 Receive Maximum and FLEETGATE_MQTT_MAX_INFLIGHT', () => {
  /** A raw subscriber that acknowledges nothing by itself: its QoS 1 PUBLISH payloads, and a PUBACK to send by hand. */
  async function stubbornSubscriber(protocolVersion: 4 | 5, filter: string, properties?: Record<string, unknown>) {
    const conn = raw(protocolVersion, properties);
    conn.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] });
    await expect.poll(conn.cmds).toEqual(['connack', 'suback']);
    const publishes = () => conn.received.filter((p) => p.cmd === 'publish') as Extract<Packet, { cmd: 'publish' }>[];
    return {
      conn,
      payloads: () => publishes().map((p) => p.payload.toString()),
      ack: (n: number) => conn.send({ cmd: 'puback', messageId: publishes()[n]!.messageId }),
    };
  }
  const publishAll = async (topic: string, count: number) => {
    const publisher = await connect({ clientId: `window-pub-${topic.length}-${count}` });
    for (let n = 1; n <= count; n++) await publisher.publishAsync(topic, `m${n}`, { qos: 1 });
    return Array.from({ length: count }, (_, n) => `m${n + 1}`);
  };

  it('MQTT 5: at most Receive Maximum unacknowledged QoS 1 deliveries; the rest wait, in order, for PUBACKs', async () => {
    const topic = `${fleet.topic}/window5`;
    const sub = await stubbornSubscriber(5, topic, { receiveMaximum: 2 });
    const sent = await publishAll(topic, 4);
    await expect.poll(sub.payloads).toEqual(['m1', 'm2']);
    await settle();
    expect(sub.payloads()).toEqual(['m1', 'm2']);
    sub.ack(0);
    await expect.poll(sub.payloads).toEqual(['m1', 'm2', 'm3']);
    sub.ack(1);
    sub.ack(2);
    await expect.poll(sub.payloads).toEqual(sent);
    expect(sub.conn.state.closed).toBe(false);
  });

  it('MQTT 3.1.1: FLEETGATE_MQTT_MAX_INFLIGHT (default 20, as mosquitto) unacknowledged deliveries, then one per PUBACK', async () => {
    const topic = `${fleet.topic}/window311`;
    const sub = await stubbornSubscriber(4, topic);
    const sent = await publishAll(topic, 22);
    await expect.poll(sub.payloads).toEqual(sent.slice(0, 20));
    await settle();
    expect(sub.payloads()).toHaveLength(20);
    sub.ack(0);
    await expect.poll(sub.payloads).toEqual(sent.slice(0, 21));
    sub.ack(1);
    await expect.poll(sub.payloads).toEqual(sent);
  });
});

describe('overlapping subscriptions with Subscription Identifiers', () => {
  it('one copy per message carrying the identifier of every matching subscription [MQTT-3.3.4-3/5], at QoS 0 and 1', async () => {
    const topic = `${fleet.topic}/ids`;
    const got: { payload: string; ids: unknown }[] = [];
    const sub = await connect({ clientId: 'ids-sub' });
    sub.on('message', (_t, payload, packet) => got.push({ payload: payload.toString(), ids: packet.properties?.subscriptionIdentifier }));
    await sub.subscribeAsync(topic, { qos: 1, properties: { subscriptionIdentifier: 2 } });
    await sub.subscribeAsync(`${topic}/#`, { qos: 1, properties: { subscriptionIdentifier: 3 } });
    await sub.subscribeAsync(`${fleet.topic}/other`, { qos: 1, properties: { subscriptionIdentifier: 4 } });
    const publisher = await connect({ clientId: 'ids-pub' });
    await publisher.publishAsync(topic, 'q0', { qos: 0 });
    await publisher.publishAsync(topic, 'q1', { qos: 1 });
    await publisher.publishAsync(`${topic}/deeper`, 'one match', { qos: 1 });
    await expect.poll(() => got.length).toBe(3);
    await settle();
    expect(got.map(({ payload, ids }) => ({ payload, ids: Array.isArray(ids) ? [...ids].sort() : ids }))).toEqual([
      { payload: 'q0', ids: [2, 3] },
      { payload: 'q1', ids: [2, 3] },
      { payload: 'one match', ids: 3 },
    ]);
  });
});

describe('MQTT 5 Receive Maximum of the server', () => {
  it('CONNACK tells FLEETGATE_MQTT_MAX_INFLIGHT (20) as Receive Maximum; one more unreleased QoS 2 PUBLISH gets DISCONNECT 0x93', async () => {
    const conn = raw(5);
    await expect.poll(conn.cmds).toEqual(['connack']);
    expect(conn.received[0]).toMatchObject({ properties: { receiveMaximum: 20 } });
    for (let id = 1; id <= 20; id++) conn.send({ cmd: 'publish', topic: `${fleet.topic}/qos2`, payload: Buffer.from('x'), qos: 2, messageId: id, dup: false, retain: false });
    await expect.poll(() => conn.cmds().filter((cmd) => cmd === 'pubrec').length).toBe(20);
    // Released, one leaves room for another.
    conn.send({ cmd: 'pubrel', messageId: 1 });
    conn.send({ cmd: 'publish', topic: `${fleet.topic}/qos2`, payload: Buffer.from('x'), qos: 2, messageId: 21, dup: false, retain: false });
    await expect.poll(() => conn.cmds().filter((cmd) => cmd === 'pubrec').length).toBe(21);
    conn.send({ cmd: 'publish', topic: `${fleet.topic}/qos2`, payload: Buffer.from('x'), qos: 2, messageId: 22, dup: false, retain: false });
    await expect.poll(() => conn.state.closed).toBe(true);
    expect(conn.received.at(-1)).toMatchObject({ cmd: 'disconnect', reasonCode: 0x93, properties: { reasonString: 'receive maximum exceeded' } });
  });
});

describe('DISCONNECT while a resumed session gets its queue', () => {
  it('an invalid topic alias or a malformed packet sent while the stored queue is being delivered gets its DISCONNECT (0x94, 0x82)', async () => {
    const topic = `${fleet.topic}/backlog`;
    const publisher = await connect({ clientId: 'backlog-pub' });
    for (const [n, [properties, messageId, reasonCode]] of ([[{ topicAlias: 0 }, 1, 0x94], [{}, 0, 0x82]] as const).entries()) {
      const clientId = `backlog-${n}`;
      const first = await connect({ clientId, properties: { sessionExpiryInterval: 3600 } });
      await first.subscribeAsync(topic, { qos: 1 });
      await ended(first);
      await Promise.all(Array.from({ length: 300 }, (_, i) => publisher.publishAsync(topic, `m${i}`, { qos: 1 })));
      // aedes calls a client connected once its queue is sent: until then it closed without a DISCONNECT. Nothing follows it.
      const conn = raw(5, { sessionExpiryInterval: 3600 }, { clientId, clean: false });
      await expect.poll(() => conn.cmds()[0]).toBe('connack');
      conn.send({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId, dup: false, retain: false, properties });
      await expect.poll(() => conn.state.closed).toBe(true);
      expect(conn.received.at(-1), JSON.stringify(properties)).toMatchObject({ cmd: 'disconnect', reasonCode });
    }
  });
});

describe('QoS 2 state of an ended session', () => {
  it('a QoS 2 PUBLISH left unreleased by a session that ended does not swallow the next session\'s PUBLISH with the same packet id', async () => {
    const topic = `${fleet.topic}/qos2-ended`;
    const watcher = await connect({ clientId: 'qos2-watcher' });
    const seen: string[] = [];
    watcher.on('message', (_t, payload) => seen.push(payload.toString()));
    await watcher.subscribeAsync(topic, { qos: 2 });
    for (const payload of ['first', 'second']) {
      const conn = raw(5, undefined, { clientId: 'qos2-same-id' });
      conn.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 2, messageId: 7, dup: false, retain: false });
      await expect.poll(conn.cmds).toEqual(['connack', 'pubrec']);
      // no PUBREL: the connection ends, and its session (expiry 0) with it
      conn.socket.destroy();
      await expect.poll(() => seen).toContain(payload);
    }
    expect(seen).toEqual(['first', 'second']);
  });

  it('MQTT 3.1.1: also past the server\'s Receive Maximum (20 unreleased), which binds MQTT 5 clients only', async () => {
    const topic = `${fleet.topic}/qos2-ended-311`;
    const watcher = await connect({ clientId: 'qos2-watcher-311' });
    const seen: string[] = [];
    watcher.on('message', (_t, payload) => seen.push(payload.toString()));
    await watcher.subscribeAsync(topic, { qos: 2 });
    const first = raw(4, undefined, { clientId: 'qos2-many' });
    for (let id = 1; id <= 21; id++) first.send({ cmd: 'publish', topic, payload: Buffer.from(`m${id}`), qos: 2, messageId: id, dup: false, retain: false });
    await expect.poll(() => first.cmds().filter((cmd) => cmd === 'pubrec').length).toBe(21);
    first.socket.destroy();
    await expect.poll(() => seen).toHaveLength(21);
    const second = raw(4, undefined, { clientId: 'qos2-many' });
    second.send({ cmd: 'publish', topic, payload: Buffer.from('again'), qos: 2, messageId: 21, dup: false, retain: false });
    await expect.poll(() => seen).toContain('again');
    second.socket.destroy();
  });
});
