import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let reader: WsClient;

beforeAll(async () => {
  gw = await startGateway();
  fleet = await provisionFleet(gw.gateway, { format: 'raw' });
  device = await fleet.client('device', ['publish']);
  const app = await fleet.client('app', ['subscribe']);
  reader = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${app.secret}`);
});
afterAll(async () => {
  reader.close();
  await gw.close();
});

describe('an empty payload on a raw channel is data (a heartbeat, a trigger), not an error', () => {
  it('WebSocket: an empty message is published, and the publisher stays connected', async () => {
    const pub = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${device.secret}`);
    pub.socket.send(Buffer.alloc(0));
    pub.socket.send('after');
    expect((await reader.next()).length).toBe(0);
    expect(String(await reader.next())).toBe('after');
    expect(pub.socket.readyState).toBe(pub.socket.OPEN);
    pub.close();
  });

  it('HTTP: an empty body gets 202 and is delivered', async () => {
    const res = await http('POST', `${gw.http}/http/${fleet.topic}`, { headers: { authorization: `Client ${device.secret}` }, body: '' });
    expect(res.status).toBe(202);
    expect((await reader.next()).length).toBe(0);
  });

  it('MQTT: an empty PUBLISH that is not retained is delivered (an empty retained one still clears the retained message)', async () => {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, username: device.id, password: device.secret });
    await client.publishAsync(fleet.topic, Buffer.alloc(0), { qos: 1 });
    expect((await reader.next()).length).toBe(0);
    expect(client.connected).toBe(true);
    await client.endAsync();
  });
});
