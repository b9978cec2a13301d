import { connect as tcp } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { generate, parser, type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, publish, run, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';
import { rawConnect } from '../helpers/mqtt-raw.ts';

let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let app: TestClient;
let both: TestClient;
let url: string;
const open: MqttClient[] = [];

/** MQTT.js (protocol 3.1.1 unless told): resolves once connected, rejects with the CONNACK return code. */
function connect(options: mqtt.IClientOptions, to = url): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(to, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options });
    open.push(client);
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}
const as = (c: TestClient, extra: mqtt.IClientOptions = {}) => connect({ username: c.id, password: c.secret, ...extra });
const closed = (client: MqttClient) => new Promise<void>((resolve) => (client.connected ? client.once('close', () => resolve()) : resolve()));
const nextMessage = (client: MqttClient) => new Promise<{ topic: string; payload: Buffer }>((resolve) => client.once('message', (topic, payload) => resolve({ topic, payload })));
/** The SUBACK return codes (MQTT.js reports a SUBACK holding 0x80 as an error that carries the packet). */
const subscribe = (client: MqttClient, filters: string[]) =>
  new Promise<number[]>((resolve, reject) => client.subscribe(filters, { qos: 0 }, (err, granted) => {
    const refused = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
    if (refused) resolve(refused);
    else if (err) reject(err);
    else resolve(granted!.map((g) => g.qos));
  }));

/** Writes raw packets on a new TCP connection; resolves with the packets received until the server closes it. */
function rawSession(packets: Buffer[], protocolVersion: 4 | 5 = 4, port = gw.gateway.mqttPort!): Promise<Packet[]> {
  const socket = tcp(port, '127.0.0.1');
  const received: Packet[] = [];
  const p = parser({ protocolVersion });
  p.on('packet', (packet) => received.push(packet));
  socket.on('data', (d) => p.parse(d));
  return new Promise((resolve) => {
    socket.on('close', () => resolve(received));
    void (async () => {
      for (const packet of packets) {
        socket.write(packet);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
  });
}
/** An MQTT 5 subscriber on a raw socket: the packets it receives as mqtt-packet parses them, and what it cannot parse. */
async function rawSubscriber5(clientId: string, filter: string) {
  const socket = tcp(gw.gateway.mqttPort!, '127.0.0.1');
  const received: Packet[] = [];
  const errors: Error[] = [];
  const p = parser({ protocolVersion: 5 });
  p.on('packet', (packet) => received.push(packet));
  p.on('error', (err) => errors.push(err));
  socket.on('data', (d) => p.parse(d));
  socket.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId, keepalive: 30, username: app.id, password: Buffer.from(app.secret) }, { protocolVersion: 5 }));
  socket.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }, { protocolVersion: 5 }));
  await expect.poll(() => received.map((packet) => packet.cmd)).toEqual(['connack', 'suback']);
  return { socket, received, errors };
}
const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);
const firstName = (_topic: string, payload: Buffer) => JSON.parse(payload.toString())[0].n as string;

/** A subscriber (app) to every subtopic of the test channel, recording `pick(topic, payload)` of each message. */
async function watchChannel(clientId: string, pick: (topic: string, payload: Buffer) => string) {
  const client = await as(app, { clientId });
  await subscribe(client, [`${fleet.topic}/#`]);
  const seen: string[] = [];
  client.on('message', (topic, payload) => seen.push(pick(topic, payload)));
  return { client, seen };
}

beforeAll(async () => {
  gw = await startGateway();
  url = `mqtt://127.0.0.1:${gw.gateway.mqttPort}`;
  fleet = await provisionFleet(gw.gateway, { route: 'plant', channelRoute: 'telemetry' });
  device = await fleet.client('device', ['publish']);
  app = await fleet.client('app', ['subscribe']);
  both = await fleet.client('both', ['publish', 'subscribe']);
});
afterAll(async () => {
  for (const c of open) c.end(true);
  await gw.close();
});

describe('MQTT: the Magistrala mosquitto commands', () => {
  it('mosquitto_pub publishes SenML that mosquitto_sub receives, normalised', async () => {
    const port = String(gw.gateway.mqttPort);
    const sub = run('mosquitto_sub', ['-u', app.id, '-P', app.secret, '-t', fleet.topic, '-h', '127.0.0.1', '-p', port, '-C', '1', '-W', '10']);
    await new Promise((r) => setTimeout(r, 300));
    const pub = await run('mosquitto_pub', ['-I', 'thermo', '-u', device.id, '-P', device.secret, '-t', fleet.topic, '-h', '127.0.0.1', '-p', port, '-m', kMagistralaPack]);
    expect(pub.code, pub.stderr).toBe(0);
    const received = await sub;
    expect(received.code, received.stderr).toBe(0);
    expect(JSON.parse(received.stdout)[2]).toMatchObject({ n: 'some-base-name:voltage', v: 120.1, t: 1.276020076001e9 });
  });

  it('mosquitto_pub with a wrong password is refused: CONNACK 4 (bad user name or password)', async () => {
    const pub = await run('mosquitto_pub', ['-u', device.id, '-P', 'wrong-password-123', '-t', fleet.topic, '-h', '127.0.0.1', '-p', String(gw.gateway.mqttPort), '-m', kMagistralaPack]);
    expect(pub.code).not.toBe(0);
    expect(pub.stderr).toMatch(/bad user name or password/i);
  });
});

describe('MQTT: cross-protocol fan-out', () => {
  it('HTTP -> MQTT, MQTT -> WS and MQTT, with ids or routes, on the canonical topic', async () => {
    const byId = await as(app);
    const byRoute = await as(app, { clientId: 'app-by-route' });
    expect(await subscribe(byId, [fleet.topic])).toEqual([0]);
    expect(await subscribe(byRoute, ['m/plant/c/telemetry'])).toEqual([0]);
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${app.secret}`);

    const fromHttp = [nextMessage(byId), nextMessage(byRoute)];
    expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack('from-http'))).status).toBe(202);
    for (const m of await Promise.all(fromHttp)) {
      expect(m.topic).toBe(fleet.topic);
      expect(JSON.parse(m.payload.toString())[0].n).toBe('from-http');
    }
    expect(JSON.parse((await ws.next()).toString())[0].n).toBe('from-http');

    const publisher = await as(device);
    const fromMqtt = nextMessage(byRoute);
    publisher.publish('m/plant/c/telemetry', pack('from-mqtt'));
    expect(JSON.parse((await fromMqtt).payload.toString())[0]).toMatchObject({ n: 'from-mqtt', t: expect.any(Number) });
    expect(JSON.parse((await ws.next()).toString())[0].n).toBe('from-mqtt');
    ws.close();
  });

  it('subtopics, wildcards and the legacy channels/<id>/messages form', async () => {
    const sub = await as(app, { clientId: 'wildcards' });
    expect(await subscribe(sub, [`${fleet.topic}/room/+`, `channels/${fleet.channel.id}/messages/hall/#`])).toEqual([0, 0]);
    const pub = await as(both);
    const got: string[] = [];
    sub.on('message', (topic) => got.push(topic));
    pub.publish(`${fleet.topic}/room/1`, pack('a'));
    pub.publish(`channels/${fleet.channel.id}/messages/hall/2/x`, pack('b'));
    pub.publish(`${fleet.topic}/elsewhere`, pack('c'));
    await expect.poll(() => got.length).toBe(2);
    // Each subscriber receives on the topic form it subscribed with (DESIGN.md §6).
    expect(got.sort()).toEqual([`${fleet.topic}/room/1`, `channels/${fleet.channel.id}/messages/hall/2/x`].sort());
  });

  it('a legacy subscriber receives on the legacy topic, a current one on the canonical topic, each once, from every protocol', async () => {
    const legacy = await as(app, { clientId: 'legacy-sub' });
    const current = await as(app, { clientId: 'current-sub' });
    expect(await subscribe(legacy, [`channels/${fleet.channel.id}/messages/legacy/#`])).toEqual([0]);
    expect(await subscribe(current, [`${fleet.topic}/legacy/#`])).toEqual([0]);
    const seen: Record<string, string[]> = { legacy: [], current: [] };
    legacy.on('message', (t) => seen.legacy!.push(t));
    current.on('message', (t) => seen.current!.push(t));
    await publish(gw.http, `/http/${fleet.topic}/legacy/http`, device.secret, pack('x'));
    (await as(device, { clientId: 'legacy-pub' })).publish(`channels/${fleet.channel.id}/messages/legacy/mqtt`, pack('y'));
    await expect.poll(() => seen.legacy!.length + seen.current!.length).toBe(4);
    await new Promise((r) => setTimeout(r, 150));
    expect(seen.legacy!.sort()).toEqual([`channels/${fleet.channel.id}/messages/legacy/http`, `channels/${fleet.channel.id}/messages/legacy/mqtt`]);
    expect(seen.current!.sort()).toEqual([`${fleet.topic}/legacy/http`, `${fleet.topic}/legacy/mqtt`]);
  });

  it('a connection that publishes and subscribes gets its own messages; JWT passwords work', async () => {
    const member = await gw.gateway.users.register({ email: 'mqtt-user@example.com', password: 'long enough password' });
    await gw.gateway.provisioning.assignUsers(fleet.domain.id, { user_ids: [member.id] });
    const { access_token } = await gw.gateway.users.issue({ email: 'mqtt-user@example.com', password: 'long enough password' });
    const user = await connect({ username: 'anything', password: access_token });
    expect(await subscribe(user, [fleet.topic])).toEqual([0]);
    const mine = nextMessage(user);
    user.publish(fleet.topic, pack('mine'));
    expect(JSON.parse((await mine).payload.toString())[0].n).toBe('mine');
  });
});

describe('MQTT 5 (aedes 2.0.0-beta.1)', () => {
  const connect5 = (options: mqtt.IClientOptions) => connect({ protocolVersion: 5, ...options });

  it('CONNACK 0x86 (bad user name or password) for bad credentials', async () => {
    await expect(connect5({ username: device.id, password: 'wrong-password-123' })).rejects.toMatchObject({ code: 0x86 });
  });

  it('a refused QoS 1 publish gets the PUBACK reason code of DESIGN.md §7 and the error code as reason string; the connection stays, nothing is delivered', async () => {
    const { client: watcher, seen } = await watchChannel('v5-watcher', firstName);
    const client = await connect5({ username: device.id, password: device.secret, clientId: 'v5-pub' });
    const reasons: (string | undefined)[] = [];
    client.on('packetreceive', (packet) => packet.cmd === 'puback' && reasons.push(packet.properties?.reasonString));
    const refusal = (topic: string, payload: string) => new Promise<{ code?: number; reason?: string }>((resolve) =>
      client.publish(topic, payload, { qos: 1 }, (err) => resolve({ code: (err as { code?: number }).code, reason: reasons.at(-1) })));
    const other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'v5-not-connected' });
    for (const [topic, payload, code, error] of [
      [fleet.topic, '[{"n":"bad name","v":1}]', 0x99, 'FG_ERR_SENML_INVALID'],
      [`m/${fleet.domain.id}/c/${other.id}`, pack('x'), 0x87, 'FG_ERR_AUTHZ_FORBIDDEN'],
      [`m/${fleet.domain.id}/c/no-such-channel`, pack('x'), 0x90, 'FG_ERR_NOT_FOUND'],
      ['not/a/fleetgate/topic', pack('x'), 0x90, 'FG_ERR_PARSE_TOPIC'],
    ] as const) {
      const refused = await refusal(topic, payload);
      expect(refused.code, topic).toBe(code);
      expect(refused.reason, topic).toMatch(new RegExp(`^${error}: `));
    }
    // A $ topic: the reason code alone, as Paho's client takes it.
    expect(await refusal('$SYS/broker/x', pack('x'))).toEqual({ code: 0x87, reason: undefined });
    expect(client.connected).toBe(true);
    client.publish(fleet.topic, '[{"n":"bad name at qos 0","v":1}]', { qos: 0 });
    await new Promise<void>((resolve, reject) => client.publish(fleet.topic, pack('v5-ok'), { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    await expect.poll(() => seen).toEqual(['v5-ok']);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual(['v5-ok']);
    watcher.end(true);
  });

  it('a refused will of an MQTT 5 client is not published', async () => {
    const { client: watcher, seen: wills } = await watchChannel('v5-will-watcher', (_t, p) => p.toString());
    const client = await connect5({ username: device.id, password: device.secret, clientId: 'v5-will', will: { topic: `${fleet.topic}/status`, payload: Buffer.from('not SenML'), qos: 0, retain: false } });
    (client as unknown as { stream: { destroy(): void } }).stream.destroy();
    const good = await connect5({ username: device.id, password: device.secret, clientId: 'v5-will-ok', will: { topic: `${fleet.topic}/status`, payload: Buffer.from(pack('v5-will')), qos: 1, retain: false } });
    (good as unknown as { stream: { destroy(): void } }).stream.destroy();
    await expect.poll(() => wills.length).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(JSON.parse(wills[0]!)[0].n).toBe('v5-will');
    expect(wills).toHaveLength(1);
    watcher.end(true);
  });

  it('a will is published without the Will Delay Interval, a CONNECT-only property, and keeps its delay', async () => {
    const subscriber = await rawSubscriber5('v5-raw-will-watcher', `${fleet.topic}/#`);
    const will = { topic: `${fleet.topic}/status`, payload: Buffer.from(pack('v5-delayed-will')), qos: 0 as const, retain: false };
    const properties = { willDelayInterval: 1, contentType: 'application/senml+json', userProperties: { site: 'north' } };
    // Reconnecting within the delay cancels the will (aedes' Will Delay Interval): proof that the delay is still read.
    const first = await connect5({ username: device.id, password: device.secret, clientId: 'v5-will-delay', properties: { sessionExpiryInterval: 60 }, will: { ...will, properties } });
    (first as unknown as { stream: { destroy(): void } }).stream.destroy();
    const second = await connect5({ username: device.id, password: device.secret, clientId: 'v5-will-delay', clean: false, properties: { sessionExpiryInterval: 0 }, will: { ...will, properties } });
    await new Promise((r) => setTimeout(r, 1500));
    expect(subscriber.received.filter((p) => p.cmd === 'publish')).toEqual([]);
    // With no session to outlive the connection, the will is sent at once.
    (second as unknown as { stream: { destroy(): void } }).stream.destroy();
    await expect.poll(() => subscriber.received.filter((p) => p.cmd === 'publish')).toHaveLength(1);
    const published = subscriber.received.find((p) => p.cmd === 'publish') as Packet & { properties?: Record<string, unknown> };
    expect(subscriber.errors).toEqual([]);
    expect(published.properties).toEqual({ contentType: 'application/senml+json', userProperties: { site: 'north' } });
    subscriber.socket.destroy();
  });

  it('a client is not sent packets over the Maximum Packet Size it set [MQTT-3.1.2-25]; others are, at QoS 0 and 1', async () => {
    const watch = async (clientId: string, properties: mqtt.IClientOptions['properties']) => {
      const client = await connect5({ username: app.id, password: app.secret, clientId, properties });
      await new Promise((resolve, reject) => client.subscribe(`${fleet.topic}/#`, { qos: 1 }, (err) => (err ? reject(err) : resolve(undefined))));
      const seen: string[] = [];
      client.on('message', (topic, payload) => seen.push(firstName(topic, payload)));
      watchers.push(client);
      return seen;
    };
    const watchers: MqttClient[] = [];
    const limited = await watch('v5-max-packet-small', { maximumPacketSize: 512 });
    const unlimited = await watch('v5-max-packet-none', {});
    const publisher = await connect5({ username: device.id, password: device.secret, clientId: 'v5-max-packet-pub' });
    const big = (n: string) => JSON.stringify([{ n, vs: 'x'.repeat(1000) }]);
    for (const [payload, qos] of [[big('big-0'), 0], [big('big-1'), 1], [pack('small-0'), 0], [pack('small-1'), 1]] as const) {
      await new Promise((resolve, reject) => publisher.publish(fleet.topic, payload, { qos }, (err) => (err ? reject(err) : resolve(undefined))));
    }
    expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, big('big-http'))).status).toBe(202);
    expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack('small-http'))).status).toBe(202);
    const all = ['big-0', 'big-1', 'big-http', 'small-0', 'small-1', 'small-http'];
    await expect.poll(() => [...unlimited].sort()).toEqual(all);
    await expect.poll(() => [...limited].sort()).toEqual(['small-0', 'small-1', 'small-http']);
    // gone before later tests publish on the channel (an empty retained publish is no SenML to read)
    for (const client of watchers) await client.endAsync();
  });

  it('SUBACK 0x87 for a refused filter, the others granted', async () => {
    const client = await connect5({ username: app.id, password: app.secret, clientId: 'v5-sub' });
    const other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'v5-other' });
    expect(await subscribe(client, [fleet.topic, `m/${fleet.domain.id}/c/${other.id}`])).toEqual([0, 0x87]);
  });
});

describe('cross-protocol matrix', () => {
  it('a message published over any protocol reaches subscribers on every protocol, once each', async () => {
    const topic = `${fleet.topic}/matrix`;
    const overWs = (secret: string, clientId: string) => connect({ username: both.id, password: secret, clientId }, `${gw.ws}/mqtt`);
    // Subscribers: WebSocket, MQTT over TCP, MQTT over WebSocket.
    const got: Record<string, string[]> = { ws: [], 'mqtt-tcp': [], 'mqtt-ws': [] };
    const wsSub = await WsClient.connect(`${gw.ws}/ws/${topic}?authorization=${app.secret}`);
    wsSub.socket.on('message', (d: Buffer) => got.ws!.push(JSON.parse(d.toString())[0].n));
    const tcpSub = await as(app, { clientId: 'matrix-tcp' });
    await subscribe(tcpSub, [topic]);
    tcpSub.on('message', (_t, p) => got['mqtt-tcp']!.push(JSON.parse(p.toString())[0].n));
    const wsMqttSub = await overWs(both.secret, 'matrix-ws-sub');
    await subscribe(wsMqttSub, [topic]);
    wsMqttSub.on('message', (_t, p) => got['mqtt-ws']!.push(JSON.parse(p.toString())[0].n));

    // Publishers: HTTP, WebSocket, MQTT over TCP, MQTT over WebSocket.
    expect((await publish(gw.http, `/http/${topic}`, device.secret, pack('from-http'))).status).toBe(202);
    const wsPub = await WsClient.connect(`${gw.ws}/ws/${topic}?authorization=${device.secret}`);
    wsPub.send(pack('from-ws'));
    const tcpPub = await as(device, { clientId: 'matrix-tcp-pub' });
    tcpPub.publish(topic, pack('from-mqtt-tcp'));
    const wsMqttPub = await overWs(both.secret, 'matrix-ws-pub');
    wsMqttPub.publish(topic, pack('from-mqtt-ws'));

    const all = ['from-http', 'from-ws', 'from-mqtt-tcp', 'from-mqtt-ws'];
    for (const via of Object.keys(got)) await expect.poll(() => [...got[via]!].sort(), { timeout: 5000 }).toEqual([...all].sort());
    await new Promise((r) => setTimeout(r, 200));
    for (const via of Object.keys(got)) expect(got[via], via).toHaveLength(4);
    wsSub.close();
    wsPub.close();
  });
});

describe('MQTT: QoS 1, retained messages and wills follow the same rules', () => {
  it('QoS 1 end to end: PUBACK to the publisher, QoS 1 delivery to the subscriber', async () => {
    const sub = await as(app, { clientId: 'qos1-sub' });
    await new Promise((resolve) => sub.subscribe(fleet.topic, { qos: 1 }, resolve));
    const pub = await as(device, { clientId: 'qos1-pub' });
    const got = new Promise<number>((resolve) => sub.once('message', (_t, _p, packet) => resolve(packet.qos)));
    await new Promise<void>((resolve, reject) => pub.publish(fleet.topic, pack('q1'), { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    expect(await got).toBe(1);
  });

  it('never acknowledges a refused QoS 1 publish', async () => {
    const client = await as(app, { clientId: 'qos1-refused' });
    const outcome = await new Promise<string>((resolve) => {
      client.publish(fleet.topic, pack('not-allowed'), { qos: 1 }, (err) => resolve(err ? 'error' : 'acknowledged'));
      client.once('close', () => setTimeout(() => resolve('closed'), 50));
    });
    expect(outcome).not.toBe('acknowledged');
  });

  it('keeps a retained message in its normalised form for later subscribers', async () => {
    const topic = `${fleet.topic}/retained`;
    const pub = await as(device, { clientId: 'retainer' });
    await new Promise((resolve) => pub.publish(topic, JSON.stringify([{ bn: 'r:', n: 'x', v: 1 }]), { qos: 1, retain: true }, resolve));
    const late = await as(app, { clientId: 'late-comer' });
    const got = nextMessage(late);
    await subscribe(late, [topic]);
    const message = await got;
    expect(message.topic).toBe(topic);
    expect(JSON.parse(message.payload.toString())[0]).toMatchObject({ n: 'r:x', v: 1, t: expect.any(Number) });

    // [MQTT-3.3.1-10] an empty retained publish clears it: a new subscriber then gets nothing.
    await new Promise((resolve) => pub.publish(topic, Buffer.alloc(0), { qos: 1, retain: true }, resolve));
    const later = await as(app, { clientId: 'after-clear' });
    const seen: string[] = [];
    later.on('message', (t) => seen.push(t));
    await subscribe(later, [topic]);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual([]);
  });

  it('publishes a will only where its client may publish, and only if its payload is valid', async () => {
    const { seen: wills } = await watchChannel('will-watcher', firstName);
    for (const [who, payload, clientId] of [
      [device, pack('good-will'), 'will-ok'],
      [app, pack('forbidden-will'), 'will-forbidden'],
      [device, '[{"n":"bad name","v":1}]', 'will-invalid'],
    ] as const) {
      const client = await as(who, { clientId, will: { topic: `${fleet.topic}/status`, payload: Buffer.from(payload), qos: 0, retain: false } });
      // An abrupt end (no DISCONNECT) fires the will.
      (client as unknown as { stream: { destroy(): void } }).stream.destroy();
    }
    await expect.poll(() => wills).toContain('good-will');
    await new Promise((r) => setTimeout(r, 200));
    expect(wills).toEqual(['good-will']);
  });
});

describe('MQTT over WebSocket (/mqtt, subprotocol mqtt)', () => {
  it('connects, subscribes and publishes like MQTT over TCP, across protocols', async () => {
    const wsUrl = `${gw.ws}/mqtt`;
    const sub = await connect({ username: app.id, password: app.secret, clientId: 'ws-sub' });
    const overWs = await connect({ username: both.id, password: both.secret, clientId: 'ws-both' }, wsUrl);
    expect(await subscribe(sub, [fleet.topic])).toEqual([0]);
    expect(await subscribe(overWs, [`${fleet.topic}/#`])).toEqual([0]);
    const atTcp = nextMessage(sub);
    const atWs = nextMessage(overWs);
    overWs.publish(fleet.topic, pack('over-ws'));
    expect(JSON.parse((await atTcp).payload.toString())[0].n).toBe('over-ws');
    expect(JSON.parse((await atWs).payload.toString())[0].n).toBe('over-ws');
    const fromHttp = nextMessage(overWs);
    await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack('http-to-ws-mqtt'));
    expect(JSON.parse((await fromHttp).payload.toString())[0].n).toBe('http-to-ws-mqtt');
  });

  it('refuses bad credentials with CONNACK 4 over WebSocket too, and an upgrade without the mqtt subprotocol', async () => {
    await expect(connect({ username: device.id, password: 'wrong-password-123' }, `${gw.ws}/mqtt`)).rejects.toMatchObject({ code: 4 });
    await expect(WsClient.connect(`${gw.ws}/mqtt`)).rejects.toMatchObject({ status: 400 });
  });
});

describe('MQTT: refusals (DESIGN.md §7)', () => {
  it.each([
    ['a wrong password', () => ({ username: device.id, password: 'wrong-password-123' }), 4],
    ['a secret of another client', () => ({ username: device.id, password: app.secret }), 4],
    ['no password', () => ({ username: device.id }), 4],
    ['a bogus token', () => ({ username: 'x', password: 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA' }), 4],
  ])('CONNACK %s -> %i', async (_name, options, code) => {
    await expect(connect(options())).rejects.toMatchObject({ code });
  });

  it('CONNACK 2 for a zero-length client id without a clean session [MQTT-3.1.3-8]', async () => {
    // MQTT.js and mqtt-packet refuse to send this CONNECT: it is built by hand.
    const packets = await rawSession([rawConnect('', false, device.id, device.secret)]);
    expect(packets).toMatchObject([{ cmd: 'connack', returnCode: 2 }]);
    const ok = await connect({ username: device.id, password: device.secret, clientId: '', clean: true });
    expect(ok.connected).toBe(true);
  });

  it('SUBACK 0x80 for each refused filter, the others granted', async () => {
    const other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'other' });
    const sub = await as(app, { clientId: 'mixed' });
    const granted = await subscribe(sub, [fleet.topic, `m/${fleet.domain.id}/c/${other.id}`, 'm/+/c/+', '$SYS/#', `${fleet.topic}/a/#/b`.replace('#/b', '+')]);
    expect(granted).toEqual([0, 128, 128, 128, 0]);
  });

  it('closes the connection on a refused PUBLISH and delivers nothing: not connected, invalid SenML, not a channel', async () => {
    const { seen: got } = await watchChannel('watcher', (_t, p) => p.toString());
    for (const [who, topic, payload] of [
      [app, fleet.topic, pack('subscriber-only')],
      [device, fleet.topic, '[{"n":"bad name","v":1}]'],
      [device, 'not/a/channel', pack('nowhere')],
    ] as const) {
      const client = await as(who, { clientId: `refused-${Math.random()}` });
      client.publish(topic, payload, { qos: 1 }, () => undefined);
      await closed(client);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual([]);
  });

  it('closes a connection whose topic holds U+0000 or invalid UTF-8 [MQTT-1.5.3-1/2], and survives garbage bytes', async () => {
    const { client: watcher, seen: got } = await watchChannel('utf8-watcher', (t) => t);
    const nul = await rawSession([
      rawConnect('raw', true, device.id, device.secret),
      generate({ cmd: 'publish', topic: `${fleet.topic}/a\u0000b`, payload: Buffer.from(pack('x')), qos: 0, dup: false, retain: false }),
    ]);
    expect(nul).toMatchObject([{ cmd: 'connack', returnCode: 0 }]);
    // A PUBLISH by hand: its topic ends in 0xC3 0x28, which is not UTF-8.
    const topic = Buffer.concat([Buffer.from(`${fleet.topic}/`), Buffer.from([0xc3, 0x28])]);
    const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.from(pack('x'))]);
    const badUtf8 = await rawSession([rawConnect('raw-utf8', true, device.id, device.secret), Buffer.concat([Buffer.from([0x30, body.length]), body])]);
    expect(badUtf8).toMatchObject([{ cmd: 'connack', returnCode: 0 }]);
    const filter = Buffer.concat([Buffer.from([0, topic.length]), topic, Buffer.from([0])]);
    const badFilter = await rawSession([rawConnect('raw-utf8-sub', true, app.id, app.secret), Buffer.concat([Buffer.from([0x82, filter.length + 2, 0, 1]), filter])]);
    expect(badFilter).toMatchObject([{ cmd: 'connack', returnCode: 0 }]);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([]);
    watcher.end(true);
    expect(await rawSession([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01])])).toEqual([]);
    // Still serving.
    const alive = await as(device, { clientId: 'alive' });
    expect(alive.connected).toBe(true);
  });

  it('refuses a CONNECT whose will topic holds U+0000 or invalid UTF-8 [MQTT-1.5.4-1/2]: 3.1.1 closed, MQTT 5 CONNACK 0x81', async () => {
    const { client: watcher, seen } = await watchChannel('will-utf8-watcher', (t) => t);
    const willConnect = (clientId: string, topic: string, protocolVersion: 4 | 5) => generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, clientId, keepalive: 30, username: device.id, password: Buffer.from(device.secret),
      will: { topic, payload: Buffer.from(pack('will')), qos: 0, retain: false },
    }, { protocolVersion });
    // é is 0xC3 0xA9: 0xC3 0x28 is not UTF-8.
    const badUtf8 = (packet: Buffer) => {
      const at = packet.indexOf(Buffer.from([0xc3, 0xa9]));
      packet[at + 1] = 0x28;
      return packet;
    };
    for (const protocolVersion of [4, 5] as const) {
      for (const packet of [willConnect(`will-nul-${protocolVersion}`, `${fleet.topic}/a\u0000b`, protocolVersion), badUtf8(willConnect(`will-utf8-${protocolVersion}`, `${fleet.topic}/\u00e9`, protocolVersion))]) {
        const received = await rawSession([packet], protocolVersion);
        if (protocolVersion === 4) expect(received).toEqual([]);
        else expect(received).toMatchObject([{ cmd: 'connack', reasonCode: 0x81, properties: { reasonString: expect.stringMatching(/^FG_ERR_REQUEST_INVALID: will topic/) } }]);
      }
    }
    // The same CONNECT with a valid will topic is accepted, and its will published.
    const good = await connect({ protocolVersion: 5, username: device.id, password: device.secret, clientId: 'will-utf8-ok', will: { topic: `${fleet.topic}/\u00e9`, payload: Buffer.from(pack('will')), qos: 0, retain: false } });
    (good as unknown as { stream: { destroy(): void } }).stream.destroy();
    await expect.poll(() => seen).toEqual([`${fleet.topic}/\u00e9`]);
    watcher.end(true);
  });

  it('cuts a connection whose packet announces more than the limit, before reading it; a CONNECT too', async () => {
    // A PUBLISH header announcing ~10 MB (Remaining Length 0x80 0x80 0x80 0x05), then a few bytes.
    const packets = await rawSession([rawConnect('big', true, device.id, device.secret), Buffer.from([0x30, 0x80, 0x80, 0x80, 0x05, 0, 1, 2, 3])]);
    expect(packets).toMatchObject([{ cmd: 'connack', returnCode: 0 }]);
    expect(await rawSession([Buffer.from([0x10, 0x80, 0x80, 0x80, 0x05, 0, 4])])).toEqual([]);
    const alive = await as(device, { clientId: 'after-big' });
    expect(alive.connected).toBe(true);
  });

  it('MQTT 5: advertises the limit in CONNACK and answers a packet over it with DISCONNECT 0x95', async () => {
    const connect5 = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'big-v5', keepalive: 30, username: device.id, password: Buffer.from(device.secret) }, { protocolVersion: 5 });
    const packets = await rawSession([connect5, Buffer.from([0x30, 0x80, 0x80, 0x80, 0x05, 0, 1, 2, 3])], 5);
    expect(packets).toMatchObject([
      { cmd: 'connack', reasonCode: 0, properties: { maximumPacketSize: gw.config.maxPayload + 64 * 1024 } },
      { cmd: 'disconnect', reasonCode: 0x95 },
    ]);
  });

  it('FLEETGATE_MAX_PAYLOAD applies to MQTT as to HTTP: a larger PUBLISH is never published (3.1.1: closed, 5: DISCONNECT 0x95)', async () => {
    const { client: watcher, seen } = await watchChannel('too-large-watcher', (_t, p) => String(p.length));
    // Valid SenML, over the limit, under the broker's packet limit (the payload limit + 64 KiB).
    const big = JSON.stringify([{ n: 'big', vs: 'x'.repeat(1_100_000) }]);
    expect(big.length).toBeGreaterThan(gw.config.maxPayload);
    expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, big)).status).toBe(413);
    const v3 = await as(device, { clientId: 'too-large-3' });
    v3.publish(fleet.topic, big, { qos: 1 }, () => undefined);
    await closed(v3);
    const v5 = await connect({ username: device.id, password: device.secret, clientId: 'too-large-5', protocolVersion: 5 });
    const disconnect = new Promise<{ reasonCode?: number; properties?: { reasonString?: string } }>((resolve) => v5.once('disconnect', resolve));
    v5.publish(fleet.topic, big, { qos: 0 });
    expect(await disconnect).toMatchObject({ reasonCode: 0x95, properties: { reasonString: expect.stringMatching(/^FG_ERR_PARSE_TOO_LARGE: /) } });
    const ok = await as(device, { clientId: 'too-large-ok' });
    ok.publish(fleet.topic, pack('small'), { qos: 1 });
    await expect.poll(() => seen).toHaveLength(1);
    expect(Number(seen[0])).toBeLessThan(100);
    watcher.end(true);
  });

  it('disconnects a live client when it is disabled', async () => {
    const victim = await fleet.client('victim', ['publish', 'subscribe']);
    const client = await as(victim);
    const gone = closed(client);
    await gw.gateway.provisioning.setClientStatus(fleet.domain.id, victim.id, 'disabled');
    await gone;
    expect((await http('GET', gw.http + '/health')).json.listeners.mqtt.port).toBe(gw.gateway.mqttPort);
  });
});

describe('MQTT: limits', () => {
  let limited: TestGateway;
  let f: Awaited<ReturnType<typeof provisionFleet>>;
  let pub: TestClient;
  let port: number;
  beforeAll(async () => {
    limited = await startGateway({ mqttConnectTimeout: 300, mqttKeepaliveLimit: 10, mqttMaxTopicLevels: 6, mqttQueueLimit: 5 });
    f = await provisionFleet(limited.gateway, { format: 'raw' });
    pub = await f.client('limited', ['publish', 'subscribe']);
    port = limited.gateway.mqttPort!;
  });
  afterAll(() => limited.close());
  const at = (options: mqtt.IClientOptions) => connect({ username: pub.id, password: pub.secret, keepalive: 5, ...options }, `mqtt://127.0.0.1:${port}`);
  const publishPacket = (topic: string, n: number) => generate({ cmd: 'publish', topic, payload: Buffer.from(`m${n}`), qos: 0, dup: false, retain: false });

  it('closes a connection that sends no CONNECT within the connect timeout', async () => {
    expect(await rawSession([], 4, port)).toEqual([]);
  });

  it('keepalive limit: MQTT 3.1.1 above it (or 0) gets CONNACK 2, MQTT 5 is told the limit', async () => {
    await expect(at({ keepalive: 60, clientId: 'ka-60' })).rejects.toMatchObject({ code: 2 });
    await expect(at({ keepalive: 0, clientId: 'ka-0' })).rejects.toMatchObject({ code: 2 });
    expect((await at({ keepalive: 5, clientId: 'ka-5' })).connected).toBe(true);
    const v5 = await new Promise<Packet>((resolve) => {
      const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, keepalive: 60, username: pub.id, password: pub.secret, clientId: 'ka-v5', reconnectPeriod: 0 });
      open.push(client);
      client.once('packetreceive', resolve);
    });
    expect(v5).toMatchObject({ cmd: 'connack', reasonCode: 0, properties: { serverKeepAlive: 10 } });
  });

  it('disconnects a client that goes silent for 1.5 × its keepalive', async () => {
    const socket = tcp(port, '127.0.0.1');
    const connack = new Promise((resolve) => socket.once('data', resolve));
    const gone = new Promise((resolve) => socket.on('close', resolve));
    const hello = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'silent', keepalive: 1, username: pub.id, password: Buffer.from(pub.secret) });
    socket.write(hello);
    await connack;
    await gone;
  });

  it('topic levels: a deeper PUBLISH closes the connection, a deeper filter is refused', async () => {
    const deep = `${f.topic}/a/b/c`;
    const sub = await at({ clientId: 'levels-sub' });
    expect(await subscribe(sub, [`${f.topic}/#`, `${deep}/#`])).toEqual([0, 128]);
    const got: string[] = [];
    sub.on('message', (t) => got.push(t));
    const client = await at({ clientId: 'levels-pub' });
    client.publish(deep, 'too deep');
    await closed(client);
    const ok = await at({ clientId: 'levels-ok' });
    ok.publish(`${f.topic}/a`, 'fits');
    await expect.poll(() => got).toEqual([`${f.topic}/a`]);
  });

  it('queue limit: packets sent before CONNACK beyond the limit close the connection; within it they are handled', async () => {
    const hello = (clientId: string) => generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 10, username: pub.id, password: Buffer.from(pub.secret) });
    const sub = await at({ clientId: 'queue-sub' });
    await subscribe(sub, [`${f.topic}/q/#`]);
    const got: string[] = [];
    sub.on('message', (_t, p) => got.push(p.toString()));
    const flood = Array.from({ length: 20 }, (_, i) => publishPacket(`${f.topic}/q/flood`, i));
    const few = Array.from({ length: 3 }, (_, i) => publishPacket(`${f.topic}/q/few`, i));
    expect(await rawSession([Buffer.concat([hello('flooder'), ...flood])], 4, port)).toEqual([]);
    const socket = tcp(port, '127.0.0.1');
    socket.write(Buffer.concat([hello('polite'), ...few]));
    await expect.poll(() => got).toEqual(['m0', 'm1', 'm2']);
    socket.destroy();
  });
});

describe('MQTT: sessions', () => {
  it('a second CONNECT with the same client id takes over: the first connection is closed', async () => {
    const first = await as(device, { clientId: 'same-id' });
    const firstClosed = closed(first);
    const second = await as(device, { clientId: 'same-id' });
    await firstClosed;
    expect(second.connected).toBe(true);
  });

  it('a persistent session that reconnects gets its subscriptions back, re-authorised, and HTTP messages again', async () => {
    const first = await as(app, { clientId: 'persistent', clean: false });
    expect(await subscribe(first, [`${fleet.topic}/persist`])).toEqual([0]);
    first.end();
    await closed(first);
    const again = await as(app, { clientId: 'persistent', clean: false });
    const got = nextMessage(again);
    expect((await publish(gw.http, `/http/${fleet.topic}/persist`, device.secret, pack('after-reconnect'))).status).toBe(202);
    expect(JSON.parse((await got).payload.toString())[0].n).toBe('after-reconnect');
    again.end();
    await closed(again);

    // Its right removed while it is away, the restored subscription is refused: nothing arrives.
    await gw.gateway.provisioning.disconnect(fleet.domain.id, { client_ids: [app.id], channel_ids: [fleet.channel.id], types: ['subscribe'] });
    const revoked = await as(app, { clientId: 'persistent', clean: false });
    const seen: string[] = [];
    revoked.on('message', (t) => seen.push(t));
    await publish(gw.http, `/http/${fleet.topic}/persist`, device.secret, pack('must-not-arrive'));
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual([]);
    await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [app.id], channel_ids: [fleet.channel.id], types: ['subscribe'] });
  });

  it('disconnects a client whose token expires', async () => {
    // No clock tolerance: the connection ends at exp + FLEETGATE_JWT_CLOCK_TOLERANCE.
    const short = await startGateway({ jwtAccessTtl: 2, jwtClockTolerance: 0 });
    try {
      const f = await provisionFleet(short.gateway);
      const u = await short.gateway.users.register({ email: 'short@example.com', password: 'long enough password' });
      await short.gateway.provisioning.assignUsers(f.domain.id, { user_ids: [u.id] });
      const { access_token } = await short.gateway.users.issue({ email: 'short@example.com', password: 'long enough password' });
      const client = await connect({ username: 'u', password: access_token }, `mqtt://127.0.0.1:${short.gateway.mqttPort}`);
      const opened = Date.now();
      await closed(client);
      expect(Date.now() - opened).toBeLessThan(4000);
    } finally {
      await short.close();
    }
  });
});

describe('MQTT: QoS 0 fan-out (each message encoded once per protocol version)', () => {
  it('every subscriber gets its own correct copy: 3.1.1 and 5, subscription identifiers, no-local, overlapping filters, retain', async () => {
    const topic = `${fleet.topic}/encode-once`;
    type Got = { topic: string; n: string; retain: boolean; id?: number | number[]; user?: unknown };
    const collect = (client: MqttClient, got: Got[]) => client.on('message', (t, p, packet) => got.push({
      topic: t, n: JSON.parse(p.toString())[0].n, retain: packet.retain,
      ...(packet.properties?.subscriptionIdentifier !== undefined && { id: packet.properties.subscriptionIdentifier }),
      ...(packet.properties?.userProperties !== undefined && { user: packet.properties.userProperties }),
    }));
    const v4: Got[] = [], overlap: Got[] = [], idA: Got[] = [], idB: Got[] = [], self: Got[] = [];
    const v4Sub = await as(app, { clientId: 'eo-v4' });
    collect(v4Sub, v4);
    await subscribe(v4Sub, [topic]);
    const overlapping = await as(app, { clientId: 'eo-overlap' });
    collect(overlapping, overlap);
    expect(await subscribe(overlapping, [topic, `${fleet.topic}/#`])).toEqual([0, 0]);
    const subscribers5: MqttClient[] = [];
    for (const [clientId, id, got] of [['eo-id-a', 7, idA], ['eo-id-b', 9, idB]] as const) {
      const c = await connect({ protocolVersion: 5, username: app.id, password: app.secret, clientId });
      subscribers5.push(c);
      collect(c, got);
      await new Promise((resolve) => c.subscribe(topic, { qos: 0, properties: { subscriptionIdentifier: id } }, resolve));
    }
    // A v5 publisher with user properties, subscribed to its own topic with no-local.
    const publisher = await connect({ protocolVersion: 5, username: both.id, password: both.secret, clientId: 'eo-pub' });
    collect(publisher, self);
    await new Promise((resolve) => publisher.subscribe(topic, { qos: 0, nl: true }, resolve));

    publisher.publish(topic, pack('one'), { qos: 0, properties: { userProperties: { site: 'north' } } });
    publisher.publish(topic, pack('two'), { qos: 0, retain: true });
    await expect.poll(() => [v4, overlap, idA, idB].map((g) => g.length)).toEqual([2, 2, 2, 2]);
    await new Promise((r) => setTimeout(r, 150));

    // Live copies never carry the retain flag [MQTT-3.3.1-9]; 3.1.1 clients get no properties.
    const plain = [{ topic, n: 'one', retain: false }, { topic, n: 'two', retain: false }];
    expect(v4).toEqual(plain);
    expect(overlap).toEqual(plain);
    expect(idA).toEqual([{ topic, n: 'one', retain: false, id: 7, user: { site: 'north' } }, { topic, n: 'two', retain: false, id: 7 }]);
    expect(idB).toEqual([{ topic, n: 'one', retain: false, id: 9, user: { site: 'north' } }, { topic, n: 'two', retain: false, id: 9 }]);
    expect(self).toEqual([]);

    // The retained copy for a later subscriber does carry it.
    const late = await as(app, { clientId: 'eo-late' });
    const retained = new Promise<boolean>((resolve) => late.once('message', (_t, _p, packet) => resolve(packet.retain)));
    await subscribe(late, [topic]);
    expect(await retained).toBe(true);
    for (const c of [v4Sub, overlapping, late, ...subscribers5]) c.end(true);
    await new Promise((resolve) => publisher.publish(topic, Buffer.alloc(0), { qos: 1, retain: true }, resolve));
  });
});

describe('MQTT: overload', () => {
  it('keeps serving while 20 publishers flood 10 subscribers', async () => {
    const pubs = await Promise.all(Array.from({ length: 20 }, (_, i) => as(both, { clientId: `flood-pub-${i}` })));
    const subs = await Promise.all(Array.from({ length: 10 }, (_, i) => as(app, { clientId: `flood-sub-${i}` })));
    for (const s of subs) await subscribe(s, [fleet.topic]);
    let delivered = 0;
    for (const s of subs) s.on('message', () => delivered++);
    const payload = pack('flood');
    const until = Date.now() + 2000;
    // Each publisher writes as fast as its socket takes it, for two seconds.
    await Promise.all(pubs.map(async (p) => {
      while (Date.now() < until) {
        for (let i = 0; i < 200; i++) p.publish(fleet.topic, payload);
        await new Promise((r) => setImmediate(r));
      }
    }));
    expect(delivered).toBeGreaterThan(0);
    // Still alive and answering on every protocol.
    expect((await http('GET', gw.http + '/health')).status).toBe(200);
    const probe = await as(device, { clientId: 'after-flood' });
    expect(probe.connected).toBe(true);
    for (const c of [...pubs, ...subs]) c.end(true);
  }, 60_000);
});

describe('MQTT: a stalled subscriber', () => {
  it('does not hold up the others, and is disconnected after the drain timeout', async () => {
    const slowGw = await startGateway({ mqttDrainTimeout: 300 });
    try {
      const f = await provisionFleet(slowGw.gateway, { format: 'raw' });
      const reader = await f.client('reader', ['subscribe']);
      const writer = await f.client('writer', ['publish']);
      const port = slowGw.gateway.mqttPort!;
      // The stalled one subscribes, then stops reading its socket.
      const stalled = tcp(port, '127.0.0.1');
      stalled.write(rawConnect('stalled', true, reader.id, reader.secret));
      stalled.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: f.topic, qos: 0 }] }));
      await new Promise((r) => setTimeout(r, 200));
      stalled.pause();

      const healthy = await connect({ username: reader.id, password: reader.secret, clientId: 'healthy' }, `mqtt://127.0.0.1:${port}`);
      await new Promise((resolve) => healthy.subscribe(f.topic, resolve));
      let received = 0;
      healthy.on('message', () => received++);
      const pub = await connect({ username: writer.id, password: writer.secret, clientId: 'writer' }, `mqtt://127.0.0.1:${port}`);
      const chunk = Buffer.alloc(60_000, 7);
      // 24 MB: far past what the stalled socket's kernel buffers take.
      for (let i = 0; i < 400; i++) pub.publish(f.topic, chunk);
      await expect.poll(() => received, { timeout: 15_000 }).toBe(400);
      // The server let go of the stalled one (a paused socket only reports its close once read, so ask the server).
      const mqttConnections = async () => /fleetgate_connections\{protocol="mqtt"\} (\d+)/.exec((await http('GET', `${slowGw.http}/metrics`)).text)?.[1];
      await expect.poll(mqttConnections, { timeout: 5000 }).toBe('2');
      stalled.destroy();
      for (const c of [healthy, pub]) c.end(true);
    } finally {
      await slowGw.close();
    }
  });
});
