import { connect as tcp } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { generate, parser, type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { until, wait } from '../helpers/until.ts';

/**
 * MQTT shared subscriptions (`$share/<group>/<filter>`, MQTT 5 §4.8.2; accepted on 3.1.1 as EMQX and Mosquitto do) on
 * one instance: each message goes to exactly one member of each group, authorised like the filter it wraps.
 */
let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let app: TestClient;
const open: MqttClient[] = [];

interface Received {
  readonly topic: string;
  readonly name: string;
  readonly qos: number;
}

/** MQTT.js, MQTT 5 unless told; every message it receives is recorded. */
async function member(options: IClientOptions = {}, c: TestClient = app, url = `mqtt://127.0.0.1:${gw.gateway.mqttPort}`): Promise<{ client: MqttClient; got: Received[]; connack: mqtt.IConnackPacket }> {
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, username: c.id, password: c.secret, ...options });
  open.push(client);
  const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, name: JSON.parse(payload.toString())[0].n, qos: packet.qos }));
  return { client, got, connack };
}

/** The SUBACK codes (MQTT.js reports a refusal as an error carrying the packet). */
const subscribe = (client: MqttClient, filters: string[], qos: 0 | 1 = 0) =>
  new Promise<number[]>((resolve, reject) => client.subscribe(filters, { qos }, (err, granted) => {
    const refused = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
    if (refused) resolve(refused);
    else if (err) reject(err);
    else resolve(granted!.map((g) => g.qos));
  }));

/** A SUBSCRIBE on a raw connection, for filters MQTT.js refuses to send: the SUBACK's codes, then a second SUBACK's. */
async function rawSubscribe(protocolVersion: 4 | 5, filters: string[], then: string[]): Promise<number[][]> {
  const socket = tcp(gw.gateway.mqttPort!, '127.0.0.1');
  const received: Packet[] = [];
  const p = parser({ protocolVersion });
  p.on('packet', (packet) => received.push(packet));
  socket.on('data', (d) => p.parse(d));
  const options = { protocolVersion };
  socket.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, clientId: '', keepalive: 30, username: app.id, password: Buffer.from(app.secret) }, options));
  socket.write(generate({ cmd: 'subscribe', messageId: 7, subscriptions: filters.map((topic) => ({ topic, qos: 1 as const })) }, options));
  socket.write(generate({ cmd: 'subscribe', messageId: 8, subscriptions: then.map((topic) => ({ topic, qos: 0 as const })) }, options));
  await until(() => received.filter((packet) => packet.cmd === 'suback').length === 2);
  socket.destroy();
  return received.flatMap((packet) => (packet.cmd === 'suback' ? [packet.granted as number[]] : []));
}

const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);

/** Publishes each name over HTTP, MQTT (QoS 1) and WebSocket in turn, to `topic`. */
async function publishAll(topic: string, all: string[]): Promise<void> {
  const pub = await member({ protocolVersion: 4 }, device);
  const ws = await WsClient.connect(`${gw.ws}/ws/${topic}`, { authorization: `Client ${device.secret}` });
  for (const [i, n] of all.entries()) {
    if (i % 3 === 0) expect((await publish(gw.http, `/http/${topic}`, device.secret, pack(n))).status).toBe(202);
    else if (i % 3 === 1) await pub.client.publishAsync(topic, pack(n), { qos: 1 });
    else ws.send(pack(n));
  }
  await wait(100);
  ws.close();
  await pub.client.endAsync();
}

const sorted = (got: Received[][]) => got.flat().map((r) => r.name).sort();

beforeAll(async () => {
  gw = await startGateway();
  fleet = await provisionFleet(gw.gateway, { route: 'plant', channelRoute: 'telemetry' });
  device = await fleet.client('device', ['publish']);
  app = await fleet.client('app', ['subscribe']);
});

afterAll(async () => {
  for (const client of open) client.end(true);
  await gw?.close();
});

describe('MQTT shared subscriptions on one instance', () => {
  it('CONNACK tells MQTT 5 clients that shared subscriptions are available', async () => {
    const { connack } = await member();
    expect(connack.properties?.sharedSubscriptionAvailable).not.toBe(false);
  });

  it('each message goes to exactly one of four members (MQTT 5, 3.1.1, over WebSocket), every member gets some, a plain subscriber gets all, on the real topic', async () => {
    const topic = `${fleet.topic}/share1`;
    const members = [await member(), await member(), await member({ protocolVersion: 4 }), await member({}, app, `${gw.ws}/mqtt`)];
    for (const m of members) expect(await subscribe(m.client, [`$share/workers/${topic}`])).toEqual([0]);
    const plain = await member();
    await subscribe(plain.client, [topic]);
    const all = names('one', 80);
    await publishAll(topic, all);
    await until(() => members.reduce((n, m) => n + m.got.length, 0) >= all.length && plain.got.length >= all.length);
    await wait(200);
    expect(sorted(members.map((m) => m.got))).toEqual([...all].sort());
    for (const m of members) expect(m.got.length).toBeGreaterThan(0);
    expect(plain.got.map((r) => r.name)).toEqual(all);
    for (const r of members.flatMap((m) => m.got)) expect(r.topic).toBe(topic);
  });

  it('two groups on the same filter each get every message once; a filter given by routes joins the group given by ids', async () => {
    const byIds = `${fleet.topic}/share2/#`;
    const byRoutes = 'm/plant/c/telemetry/share2/#';
    const a = [await member(), await member()];
    const b = [await member(), await member({ protocolVersion: 4 })];
    await subscribe(a[0]!.client, [`$share/a/${byIds}`]);
    await subscribe(a[1]!.client, [`$share/a/${byRoutes}`]);
    for (const m of b) await subscribe(m.client, [`$share/b/${byIds}`]);
    const all = names('two', 30);
    await publishAll(`${fleet.topic}/share2/x`, all);
    await until(() => [a, b].every((g) => g.reduce((n, m) => n + m.got.length, 0) >= all.length));
    await wait(200);
    for (const g of [a, b]) {
      expect(sorted(g.map((m) => m.got))).toEqual([...all].sort());
      for (const m of g) expect(m.got.length).toBeGreaterThan(0);
    }
    expect(a[1]!.got[0]!.topic).toBe(`${fleet.topic}/share2/x`);
  });

  it('a legacy filter shares on the legacy topic', async () => {
    const topic = `channels/${fleet.channel.id}/messages/legacy`;
    const members = [await member(), await member()];
    for (const m of members) await subscribe(m.client, [`$share/old/${topic}`]);
    const all = names('legacy', 10);
    await publishAll(`${fleet.topic}/legacy`, all);
    await until(() => members.reduce((n, m) => n + m.got.length, 0) >= all.length);
    await wait(200);
    expect(sorted(members.map((m) => m.got))).toEqual([...all].sort());
    for (const r of members.flatMap((m) => m.got)) expect(r.topic).toBe(topic);
  });

  it('a member gets the lower of its QoS and the message\'s', async () => {
    const topic = `${fleet.topic}/qos`;
    const one = await member();
    await subscribe(one.client, [`$share/q1/${topic}`], 1);
    const zero = await member();
    await subscribe(zero.client, [`$share/q0/${topic}`], 0);
    const pub = await member({}, device);
    await pub.client.publishAsync(topic, pack('at-1'), { qos: 1 });
    await pub.client.publishAsync(topic, pack('at-0'), { qos: 0 });
    await until(() => one.got.length === 2 && zero.got.length === 2);
    expect(one.got.map((r) => [r.name, r.qos])).toEqual([['at-1', 1], ['at-0', 0]]);
    expect(zero.got.map((r) => [r.name, r.qos])).toEqual([['at-1', 0], ['at-0', 0]]);
  });

  it('refuses a share of a channel the client may not subscribe to: 0x87 (MQTT 5), 0x80 (3.1.1); nothing arrives', async () => {
    const other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'not-connected' });
    const filter = `$share/g/m/${fleet.domain.id}/c/${other.id}/#`;
    const v5 = await member();
    const v4 = await member({ protocolVersion: 4 });
    expect(await subscribe(v5.client, [filter, `$share/g/${fleet.topic}/ok`])).toEqual([0x87, 0]);
    expect(await subscribe(v4.client, [filter])).toEqual([0x80]);
    const publisher = await fleet.client('other-pub', ['publish'], { channelId: other.id });
    expect((await publish(gw.http, `/http/m/${fleet.domain.id}/c/${other.id}`, publisher.secret, pack('secret'))).status).toBe(202);
    await wait(200);
    expect([...v5.got, ...v4.got]).toEqual([]);
  });

  it.each([
    ['empty group', '$share//TOPIC'],
    ['no filter', '$share/g'],
    ['empty filter', '$share/g/'],
    ['"+" in the group', '$share/a+b/TOPIC'],
    ['"#" in the group', '$share/a#/TOPIC'],
    ['fleetgate\'s own prefix', '$fleetgate-share/g/TOPIC'],
  ])('refuses a malformed shared filter (%s): 0x8F (MQTT 5), 0x80 (3.1.1), the other filters granted, the connection kept', async (_, malformed) => {
    const filter = malformed.replace('TOPIC', fleet.topic);
    const granted = [1, 0x8f, 1];
    expect(await rawSubscribe(5, [`${fleet.topic}/ok`, filter, `$share/g/${fleet.topic}/ok`], [`${fleet.topic}/more`])).toEqual([granted, [0]]);
    expect(await rawSubscribe(4, [`${fleet.topic}/ok`, filter, `$share/g/${fleet.topic}/ok`], [`${fleet.topic}/more`])).toEqual([[1, 0x80, 1], [0]]);
  });

  it('a member that unsubscribes or disconnects leaves: the others get everything; a group without members gets nothing, later', async () => {
    const topic = `${fleet.topic}/leave`;
    const filter = `$share/leavers/${topic}`;
    const [stay, unsub, unsub5, gone] = [await member(), await member({ protocolVersion: 4 }), await member(), await member()];
    for (const m of [stay, unsub, unsub5, gone]) await subscribe(m.client, [filter]);
    await unsub.client.unsubscribeAsync(filter);
    // MQTT 5 UNSUBACK: 0x00 for the share it held, 0x11 (no subscription existed) for one it did not
    expect(await unsub5.client.unsubscribeAsync([filter, `$share/other/${topic}`])).toMatchObject({ cmd: 'unsuback', granted: [0, 0x11] });
    await gone.client.endAsync();
    const all = names('after-leave', 12);
    await publishAll(topic, all);
    await until(() => stay.got.length >= all.length);
    await wait(200);
    expect(stay.got.map((r) => r.name)).toEqual(all);
    expect([...unsub.got, ...unsub5.got]).toEqual([]);

    await stay.client.endAsync();
    expect((await publish(gw.http, `/http/${topic}`, device.secret, pack('nobody'))).status).toBe(202);
    const late = await member();
    await subscribe(late.client, [filter], 1);
    expect((await publish(gw.http, `/http/${topic}`, device.secret, pack('late'))).status).toBe(202);
    await until(() => late.got.length >= 1);
    await wait(200);
    expect(late.got.map((r) => r.name)).toEqual(['late']);
  });

  it('a client with a plain and a shared subscription that both match gets its plain copy of every message, and its share', async () => {
    const topic = `${fleet.topic}/both`;
    const [both, other] = [await member(), await member()];
    await subscribe(both.client, [topic, `$share/mixed/${topic}`]);
    await subscribe(other.client, [`$share/mixed/${topic}`]);
    const all = names('both', 10);
    await publishAll(topic, all);
    await until(() => both.got.length + other.got.length >= 2 * all.length);
    await wait(200);
    const shared = all.length - other.got.length;
    expect(both.got).toHaveLength(all.length + shared);
    expect([...new Set(both.got.map((r) => r.name))].sort()).toEqual([...all].sort());
  });

  it.each([['3.1.1', 4], ['5', 5]] as const)('MQTT %s: a persistent session keeps its share: gone, it gets nothing (the others do); back, it shares again without subscribing', async (_, protocolVersion) => {
    const topic = `${fleet.topic}/persist-${protocolVersion}`;
    const filter = `$share/keep/${topic}`;
    const session = { protocolVersion, clientId: `shared-persist-${protocolVersion}`, clean: false, ...(protocolVersion === 5 && { properties: { sessionExpiryInterval: 600 } }) };
    const first = await member(session);
    await subscribe(first.client, [filter], 1);
    await first.client.endAsync();
    const other = await member();
    await subscribe(other.client, [filter], 1);
    expect((await publish(gw.http, `/http/${topic}`, device.secret, pack('while-away'))).status).toBe(202);
    await until(() => other.got.length === 1);

    const back = await member(session);
    expect(back.connack.sessionPresent).toBe(true);
    const all = names(`persist-${protocolVersion}`, 10);
    await publishAll(topic, all);
    await until(() => back.got.length + other.got.length >= all.length + 1);
    await wait(200);
    expect([...back.got, ...other.got].map((r) => r.name).sort()).toEqual([...all, 'while-away'].sort());
    expect(back.got.length).toBeGreaterThan(0);
    expect(back.got.map((r) => r.name)).not.toContain('while-away');
  });

  it('a new member gets no retained message; its deliveries carry its MQTT 5 subscription identifier', async () => {
    const topic = `${fleet.topic}/retained`;
    const pub = await member({}, device);
    await pub.client.publishAsync(topic, pack('kept'), { qos: 1, retain: true });
    const plain = await member();
    await subscribe(plain.client, [topic]);
    await until(() => plain.got.length === 1);
    const shared = await member();
    const ids: (number | number[] | undefined)[] = [];
    shared.client.on('message', (_t, _p, packet) => ids.push(packet.properties?.subscriptionIdentifier));
    await shared.client.subscribeAsync(`$share/ids/${topic}`, { qos: 1, properties: { subscriptionIdentifier: 42 } });
    await wait(200);
    expect(shared.got).toEqual([]);
    await pub.client.publishAsync(topic, pack('live'), { qos: 1 });
    await until(() => shared.got.length === 1);
    expect(shared.got[0]).toMatchObject({ name: 'live', qos: 1 });
    expect(ids).toEqual([42]);
    await pub.client.publishAsync(topic, '', { qos: 1, retain: true });
  });
});

