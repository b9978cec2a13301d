import mqtt, { type MqttClient } from 'mqtt';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelSubjects } from '../../src/bus/subject.ts';
import { publish } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { startNats, type ServerProcess } from '../helpers/servers.ts';
import { wait } from '../helpers/until.ts';

// UNSUBSCRIBE of a filter in any form the SUBSCRIBE accepted (ids, routes), and what it stops watching.
let nats: ServerProcess;
let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let other: Awaited<ReturnType<typeof provisionFleet>>['channel'];
let device: TestClient;
let app: TestClient;
let bus: NatsConnection;
const open: MqttClient[] = [];

const as = async (c: TestClient, options: mqtt.IClientOptions = {}): Promise<MqttClient> => {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, username: c.id, password: c.secret, ...options });
  open.push(client);
  return client;
};
const pack = (n: string) => [{ n, v: 1 }];
/** The names of the messages a client receives. */
function record(client: MqttClient): string[] {
  const seen: string[] = [];
  client.on('message', (_topic, payload) => seen.push(JSON.parse(payload.toString())[0].n));
  return seen;
}
const send = async (subtopic: string, name: string, channelId = fleet.channel.id) =>
  expect((await publish(gw.http, `/http/m/${fleet.domain.id}/c/${channelId}/${subtopic}`, device.secret, pack(name))).status).toBe(202);
/** Whether an instance subscribes to the channel's subject on the bus: NATS answers "no responders" when none does. */
const busWatches = (channelId: string) =>
  bus.request(channelSubjects(channelId)[1].replace('*', 'x').replace('>', 'probe'), new Uint8Array(), { timeout: 500 }).then(
    () => true,
    (err: { code?: string }) => err.code !== '503',
  );

beforeAll(async () => {
  nats = await startNats();
  gw = await startGateway({ bus: nats.url });
  fleet = await provisionFleet(gw.gateway, { route: 'plant', channelRoute: 'telemetry' });
  other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'other', route: 'other' });
  device = await fleet.client('device', ['publish']);
  await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [device.id], channel_ids: [other.id], types: ['publish'] });
  app = await fleet.client('app', ['subscribe']);
  await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [app.id], channel_ids: [other.id], types: ['subscribe'] });
  bus = await natsConnect({ servers: nats.url });
}, 30_000);
afterAll(async () => {
  for (const client of open) client.end(true);
  await bus?.close();
  await gw?.close();
  await nats?.close();
});

describe('MQTT UNSUBSCRIBE', () => {
  it('a filter given by routes is unsubscribed (MQTT 5 UNSUBACK 0x00, then 0x11): nothing more arrives on it', async () => {
    const client = await as(app, { protocolVersion: 5, clientId: 'unsub-routes' });
    await client.subscribeAsync(['m/plant/c/telemetry/a', `m/${fleet.domain.id}/c/telemetry/b`, `${fleet.topic}/c`]);
    const seen = record(client);
    await send('a', 'a-1');
    await expect.poll(() => seen).toEqual(['a-1']);
    expect(await client.unsubscribeAsync(['m/plant/c/telemetry/a', `m/${fleet.domain.id}/c/telemetry/b`])).toMatchObject({ cmd: 'unsuback', granted: [0, 0] });
    expect(await client.unsubscribeAsync(['m/plant/c/telemetry/a', `m/plant/c/${fleet.channel.id}/b`, 'm/plant/c/nowhere/a'])).toMatchObject({ granted: [0x11, 0x11, 0x11] });
    // in order on one channel: had "a" or "b" still been subscribed, it would have come before "c"
    await send('a', 'a-2');
    await send('b', 'b-2');
    await send('c', 'c-2');
    await expect.poll(() => seen).toEqual(['a-1', 'c-2']);
  });

  it('after its last filter on a channel, the client is no longer watched for it: revoking its right leaves it connected', async () => {
    const client = await as(app, { clientId: 'unsub-revoke' });
    await client.subscribeAsync(['m/plant/c/other/#', 'm/plant/c/telemetry/#']);
    await client.unsubscribeAsync('m/plant/c/other/#');
    const closed = new Promise<void>((resolve) => client.once('close', resolve));
    let gone = false;
    void closed.then(() => (gone = true));
    await gw.gateway.provisioning.disconnect(fleet.domain.id, { client_ids: [app.id], channel_ids: [other.id], types: ['subscribe'] });
    try {
      // a round trip after the re-check: still connected, still receiving on the channel it kept
      const seen = record(client);
      await send('x', 'kept');
      await expect.poll(() => seen).toEqual(['kept']);
      expect(gone).toBe(false);
    } finally {
      await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [app.id], channel_ids: [other.id], types: ['subscribe'] });
    }
    // while a filter left on a channel still disconnects when its right goes
    await client.unsubscribeAsync('m/plant/c/telemetry/#');
    await client.subscribeAsync('m/plant/c/other/y');
    await gw.gateway.provisioning.disconnect(fleet.domain.id, { client_ids: [app.id], channel_ids: [other.id], types: ['subscribe'] });
    await closed;
    await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [app.id], channel_ids: [other.id], types: ['subscribe'] });
  });

  it('the instance leaves the channel\'s bus subject once no local client subscribes to it any more', async () => {
    const one = await as(app, { clientId: 'unsub-bus-1' });
    const two = await as(app, { clientId: 'unsub-bus-2' });
    expect(await busWatches(other.id)).toBe(false);
    await one.subscribeAsync(['m/plant/c/other/a', `m/${fleet.domain.id}/c/${other.id}/#`]);
    await two.subscribeAsync('m/plant/c/other/#');
    // the gateway's SUB reaches nats-server a little after the SUBACK
    await expect.poll(() => busWatches(other.id)).toBe(true);
    await one.unsubscribeAsync('m/plant/c/other/a');
    await one.unsubscribeAsync(`m/${fleet.domain.id}/c/${other.id}/#`);
    // an UNSUB sent by mistake would have reached it by now
    await wait(200);
    expect(await busWatches(other.id)).toBe(true);
    await two.unsubscribeAsync('m/plant/c/other/#');
    await expect.poll(() => busWatches(other.id)).toBe(false);
  });
});
