import { connect as tcp } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { generate } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { rawConnect } from '../helpers/mqtt-raw.ts';

let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let reader: TestClient;
const open: MqttClient[] = [];

function connect(who: TestClient, url: string, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, username: who.id, password: who.secret, clientId });
    open.push(client);
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}
const subscribe = (client: MqttClient, topic: string, qos: 0 | 1 = 0) => new Promise<void>((resolve, reject) => client.subscribe(topic, { qos }, (err) => (err ? reject(err) : resolve())));
const received = (client: MqttClient) => {
  const seen: Buffer[] = [];
  client.on('message', (_topic, payload) => seen.push(payload));
  return seen;
};

/** One sample of the /metrics page: `name{labels}` as written by prom-client, or the bare name. */
async function sample(series: string): Promise<number | undefined> {
  const text = (await http('GET', `${gw.http}/metrics`)).text;
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);

beforeAll(async () => {
  gw = await startGateway({ mqttDrainTimeout: 300 });
  fleet = await provisionFleet(gw.gateway);
  device = await fleet.client('device', ['publish']);
  reader = await fleet.client('reader', ['subscribe']);
});

afterAll(async () => {
  for (const c of open) c.end(true);
  await gw?.close();
});

describe('/metrics after real traffic on each protocol', () => {
  it('counts deliveries, connections and subscriptions by protocol: WebSocket, MQTT, MQTT over WebSocket, QoS 0 and 1', async () => {
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${reader.secret}`);
    const overTcp = await connect(reader, `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, 'm-tcp');
    const overWs = await connect(reader, `${gw.ws}/mqtt`, 'm-ws');
    const atQos1 = await connect(reader, `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, 'm-qos1');
    await subscribe(overTcp, fleet.topic);
    await subscribe(overWs, fleet.topic);
    await subscribe(atQos1, fleet.topic, 1);
    const [tcpSeen, wsSeen, qos1Seen] = [received(overTcp), received(overWs), received(atQos1)];

    expect(await sample('fleetgate_connections{protocol="ws"}')).toBe(1);
    expect(await sample('fleetgate_connections{protocol="mqtt"}')).toBe(2);
    expect(await sample('fleetgate_connections{protocol="mqtt-ws"}')).toBe(1);
    expect(await sample('fleetgate_subscriptions{protocol="ws"}')).toBe(1);
    expect(await sample('fleetgate_subscriptions{protocol="mqtt"}')).toBe(2);
    expect(await sample('fleetgate_subscriptions{protocol="mqtt-ws"}')).toBe(1);

    // Two HTTP publishes (QoS 0 to MQTT), two MQTT QoS 1 publishes.
    for (const n of ['a', 'b']) expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack(n))).status).toBe(202);
    const publisher = await connect(device, `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, 'm-pub');
    for (const n of ['c', 'd']) await publisher.publishAsync(fleet.topic, pack(n), { qos: 1 });
    for (let i = 0; i < 4; i++) await ws.next();
    await expect.poll(() => [tcpSeen.length, wsSeen.length, qos1Seen.length]).toEqual([4, 4, 4]);

    expect(await sample('fleetgate_deliveries_total{protocol="ws"}')).toBe(4);
    // MQTT over TCP: 4 to the QoS 0 subscriber (encode-once path), 4 to the QoS 1 one (2 of them through aedes' QoS 1 path).
    expect(await sample('fleetgate_deliveries_total{protocol="mqtt"}')).toBe(8);
    expect(await sample('fleetgate_deliveries_total{protocol="mqtt-ws"}')).toBe(4);
    expect(await sample('fleetgate_messages_accepted_total{protocol="http"}')).toBe(2);
    expect(await sample('fleetgate_messages_accepted_total{protocol="mqtt"}')).toBe(2);

    ws.close();
    await ws.closed;
    for (const c of [overTcp, overWs, atQos1, publisher]) await c.endAsync();
    await expect.poll(() => sample('fleetgate_connections{protocol="mqtt"}')).toBe(0);
    expect(await sample('fleetgate_connections{protocol="mqtt-ws"}')).toBe(0);
    await expect.poll(() => sample('fleetgate_subscriptions{protocol="ws"}')).toBe(0);
    expect(await sample('fleetgate_subscriptions{protocol="mqtt"}')).toBe(0);
  });

  it('counts authentications by protocol and result, refusals by their FG_ERR code', async () => {
    expect((await publish(gw.http, `/http/${fleet.topic}`, 'not-a-secret-of-anyone', pack('x'))).status).toBe(401);
    await expect(WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=wrong-secret-for-ws`)).rejects.toMatchObject({ status: 401 });
    await expect(connect({ id: device.id, secret: 'wrong-secret-for-mqtt' }, `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, 'm-bad')).rejects.toThrow();
    expect((await http('GET', `${gw.http}/users/profile`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);

    expect(await sample('fleetgate_authentications_total{protocol="http",result="FG_ERR_AUTHN_INVALID"}')).toBe(1);
    expect(await sample('fleetgate_authentications_total{protocol="ws",result="FG_ERR_AUTHN_INVALID"}')).toBe(1);
    expect(await sample('fleetgate_authentications_total{protocol="mqtt",result="FG_ERR_AUTHN_INVALID"}')).toBe(1);
    expect(await sample('fleetgate_authentications_total{protocol="api",result="FG_ERR_AUTHN_INVALID"}')).toBe(1);
    expect(await sample('fleetgate_authentications_total{protocol="http",result="ok"}')).toBeGreaterThanOrEqual(2);
    expect(await sample('fleetgate_authentications_total{protocol="mqtt-ws",result="ok"}')).toBe(1);
  });

  it('counts retained messages as they are set, replaced and cleared', async () => {
    const publisher = await connect(device, `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, 'm-retain');
    await publisher.publishAsync(`${fleet.topic}/one`, pack('r1'), { qos: 1, retain: true });
    await publisher.publishAsync(`${fleet.topic}/two`, pack('r2'), { qos: 1, retain: true });
    await publisher.publishAsync(`${fleet.topic}/two`, pack('r3'), { qos: 1, retain: true });
    // One per topic (fleetgate also keeps each on its legacy topic: not counted twice).
    await expect.poll(() => sample('fleetgate_retained_messages')).toBe(2);
    await publisher.publishAsync(`${fleet.topic}/one`, '', { qos: 1, retain: true });
    await expect.poll(() => sample('fleetgate_retained_messages')).toBe(1);
    await publisher.endAsync();
  });

  it('counts an MQTT subscriber dropped for being too slow', async () => {
    const before = (await sample('fleetgate_subscriber_drops_total{protocol="mqtt"}')) ?? 0;
    const stalled = tcp(gw.gateway.mqttPort!, '127.0.0.1');
    stalled.write(rawConnect('stalled', true, reader.id, reader.secret));
    stalled.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: fleet.topic, qos: 0 }] }));
    await expect.poll(() => sample('fleetgate_subscriptions{protocol="mqtt"}')).toBe(1);
    stalled.pause();
    const publisher = await connect(device, `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, 'm-flood');
    const chunk = JSON.stringify([{ n: 'big', vs: 'x'.repeat(60_000) }]);
    for (let i = 0; i < 400; i++) publisher.publish(fleet.topic, chunk);
    await expect.poll(() => sample('fleetgate_subscriber_drops_total{protocol="mqtt"}'), { timeout: 10_000 }).toBe(before + 1);
    stalled.destroy();
    await publisher.endAsync();
  }, 20_000);
});
