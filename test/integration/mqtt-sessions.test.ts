import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { http } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { wait } from '../helpers/until.ts';

// Issue 15 items 4-6: persistent sessions are re-authorised when restored, and bounded (queue length, session and
// message expiry), with metrics.
const admin = { email: 'admin@example.com', password: 'correct horse battery' };
const open: MqttClient[] = [];
const teardown: (() => unknown)[] = [];
afterEach(async () => {
  for (const client of open.splice(0)) client.end(true);
  for (const step of teardown.splice(0).reverse()) await step();
});
const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

async function gatewayWithFleet(overrides: Parameters<typeof startGateway>[0] = {}) {
  const gw = await startGateway({ adminEmail: admin.email, adminPassword: admin.password, ...overrides });
  teardown.push(() => gw.close());
  const fleet = await provisionFleet(gw.gateway);
  const device = await fleet.client('device', ['subscribe']);
  const sender = await fleet.client('sender', ['publish']);
  return { gw, fleet, device, sender };
}

/** MQTT.js as `who`: resolves once connected, with the CONNACK and the names of what it receives, recorded from the
 * start (a resumed session's queue may arrive in the CONNACK's own segment, before the caller's code runs again). */
function connect(gw: TestGateway, who: TestClient, options: IClientOptions = {}) {
  return new Promise<{ client: MqttClient; sessionPresent: boolean; properties?: { sessionExpiryInterval?: number }; seen: string[] }>((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, {
      protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, clientId: `c-${Math.random()}`, username: who.id, password: who.secret, ...options,
    });
    open.push(client);
    const seen: string[] = [];
    client.on('message', (_topic, payload) => seen.push(JSON.parse(payload.toString())[0].n));
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, properties: connack.properties, seen }));
    client.once('error', reject);
  });
}
const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);
const end = (client: MqttClient) => new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
async function send(gw: TestGateway, sender: TestClient, topic: string, messages: string[], options: IClientOptions = {}, publish: mqtt.IClientPublishOptions = {}) {
  const { client } = await connect(gw, sender, options);
  for (const name of messages) await client.publishAsync(topic, pack(name), { qos: 1, ...publish });
  await end(client);
}
async function sample(gw: TestGateway, series: string): Promise<number | undefined> {
  const text = (await http('GET', `${gw.http}/metrics`)).text;
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('authorisation of a stored session', () => {
  it('a client disconnected from a channel while offline receives nothing more from it: neither queued messages nor new ones', async () => {
    const { gw, fleet, device, sender } = await gatewayWithFleet();
    const other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'other' });
    await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [device.id, sender.id], channel_ids: [other.id], types: ['subscribe', 'publish'] });
    const otherTopic = `m/${fleet.domain.id}/c/${other.id}`;

    const first = await connect(gw, device, { clientId: 'sleepy', clean: false });
    await first.client.subscribeAsync([`${fleet.topic}/#`, `${otherTopic}/#`], { qos: 1 });
    await end(first.client);
    await send(gw, sender, `${fleet.topic}/cmd`, ['revoked-1', 'revoked-2']);
    await send(gw, sender, `${otherTopic}/cmd`, ['still-allowed']);

    // The operator removes the device's connection to the first channel (REST API).
    const token = (await http('POST', `${gw.http}/users/tokens/issue`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(admin) })).json.access_token;
    const removed = await http('POST', `${gw.http}/${fleet.domain.id}/channels/disconnect`, {
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ client_ids: [device.id], channel_ids: [fleet.channel.id], types: ['subscribe'] }),
    });
    expect(removed.status).toBeLessThan(300);

    const again = await connect(gw, device, { clientId: 'sleepy', clean: false });
    expect(again.sessionPresent).toBe(true);
    const seen = again.seen;
    await expect.poll(() => seen, { timeout: 10_000 }).toContain('still-allowed');
    // and a new message on the revoked channel does not come either (a later one on the other does)
    await send(gw, sender, `${fleet.topic}/cmd`, ['revoked-3']);
    await send(gw, sender, `${otherTopic}/cmd`, ['marker']);
    await expect.poll(() => seen, { timeout: 10_000 }).toContain('marker');
    expect(seen).toEqual(['still-allowed', 'marker']);
  });
});

describe('limits', () => {
  it('FLEETGATE_MQTT_MAX_QUEUED: an offline session keeps the newest messages, the oldest are dropped and counted; sessions and queue in /metrics', async () => {
    const { gw, fleet, device, sender } = await gatewayWithFleet({ mqttMaxQueued: 3 });
    const first = await connect(gw, device, { clientId: 'sleepy', clean: false });
    await first.client.subscribeAsync(`${fleet.topic}/#`, { qos: 1 });
    await end(first.client);
    await send(gw, sender, `${fleet.topic}/cmd`, ['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(await sample(gw, 'fleetgate_mqtt_queued_messages')).toBe(3);
    expect(await sample(gw, 'fleetgate_mqtt_queue_dropped_total')).toBe(2);
    expect(await sample(gw, 'fleetgate_mqtt_sessions{kind="persistent"}')).toBe(1);
    expect(await sample(gw, 'fleetgate_mqtt_sessions{kind="online"}')).toBe(0);

    const again = await connect(gw, device, { clientId: 'sleepy', clean: false });
    const seen = again.seen;
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['m3', 'm4', 'm5']);
    await expect.poll(() => sample(gw, 'fleetgate_mqtt_queued_messages'), { timeout: 10_000 }).toBe(0);
    expect(await sample(gw, 'fleetgate_mqtt_sessions{kind="online"}')).toBe(1);
  });

  it('FLEETGATE_MQTT_MAX_QUEUED online: deliveries waiting for a full in-flight window keep the newest, the oldest are dropped and counted; the subscriber stays', async () => {
    const { gw, fleet, device, sender } = await gatewayWithFleet({ mqttMaxQueued: 3, mqttMaxInflight: 1 });
    // a subscriber that acknowledges only when told (MQTT.js does this for MQTT 5 only): what arrived, and its PUBACKs
    const seen: string[] = [];
    const acks: (() => void)[] = [];
    const { client } = await connect(gw, device, {
      protocolVersion: 5,
      customHandleAcks: (_topic, message, _packet, done) => {
        seen.push(JSON.parse(message.toString())[0].n);
        acks.push(() => done(0));
      },
    });
    await client.subscribeAsync(`${fleet.topic}/#`, { qos: 1 });
    await send(gw, sender, `${fleet.topic}/cmd`, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
    // m1 in flight, m2-m4 waiting; m5 and m6 each pushed out the oldest waiting one
    await expect.poll(() => seen).toEqual(['m1']);
    expect(await sample(gw, 'fleetgate_mqtt_queue_dropped_total')).toBe(2);
    for (let n = 0; n < 3; n++) {
      acks[n]!();
      await expect.poll(() => seen).toHaveLength(n + 2);
    }
    expect(seen).toEqual(['m1', 'm4', 'm5', 'm6']);
    expect(client.connected).toBe(true);
    expect(await sample(gw, 'fleetgate_subscriber_drops_total{protocol="mqtt"}') ?? 0, 'subscribers dropped as too slow').toBe(0);
  });

  it.each([
    ['clean sessions', true],
    ['persistent sessions', false],
  ])('QoS 1 flood from several publishers to QoS 1 subscribers (%s) that keep acknowledging: they stay connected, each message arrives once in order or is counted as dropped', async (_, clean) => {
    const { gw, fleet, device, sender } = await gatewayWithFleet();
    const topic = `${fleet.topic}/flood`;
    const subscribers = await Promise.all([0, 1].map(async () => {
      const { client, seen } = await connect(gw, device, { clean });
      await client.subscribeAsync(topic, { qos: 1 });
      return { client, seen };
    }));
    const perPublisher = 2000;
    // as fast as each publisher's socket takes them: every PUBLISH is written before the first PUBACK is awaited
    await Promise.all(['a', 'b', 'c'].map(async (p) => {
      const { client } = await connect(gw, sender);
      await Promise.all(Array.from({ length: perPublisher }, (_, n) => client.publishAsync(topic, pack(`${p}${n}`), { qos: 1 })));
    }));
    const total = 3 * perPublisher * subscribers.length;
    const received = () => subscribers.reduce((sum, s) => sum + s.seen.length, 0);
    // Settled: nothing waits or is in flight, and every delivery that did not arrive was counted as dropped. A persistent
    // session's full stored queue may drop a message just as it is being sent: counted, and it still arrives.
    const dropped = async () => (await sample(gw, 'fleetgate_mqtt_queue_dropped_total')) ?? 0;
    const settled = async () => (await sample(gw, 'fleetgate_mqtt_queued_messages')) === 0 && (await dropped()) >= total - received();
    await expect.poll(settled, { timeout: 20_000 }).toBe(true);
    if (clean) expect(received() + (await dropped())).toBe(total);
    expect(received(), 'most deliveries arrive').toBeGreaterThan(total / 10);
    for (const { client, seen } of subscribers) {
      expect(client.connected).toBe(true);
      for (const p of ['a', 'b', 'c']) {
        const order = seen.filter((name) => name.startsWith(p)).map((name) => Number(name.slice(1)));
        expect(order.every((n, i) => i === 0 || n > order[i - 1]!), `${p}'s messages in order, none twice`).toBe(true);
      }
    }
    expect(await sample(gw, 'fleetgate_subscriber_drops_total{protocol="mqtt"}') ?? 0, 'subscribers dropped as too slow').toBe(0);
  });

  it('FLEETGATE_MQTT_SESSION_EXPIRY_MAX: caps MQTT 5 Session Expiry (told in CONNACK) and ends MQTT 3.1.1 persistent sessions', async () => {
    const { gw, fleet, device } = await gatewayWithFleet({ mqttSessionExpiryMax: 1 });
    const v5 = await connect(gw, device, { clientId: 'v5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
    expect(v5.properties?.sessionExpiryInterval).toBe(1);
    const v4 = await connect(gw, device, { clientId: 'v4', clean: false });
    for (const { client } of [v5, v4]) {
      await client.subscribeAsync(`${fleet.topic}/#`, { qos: 1 });
      await end(client);
    }
    await wait(2500);
    expect((await connect(gw, device, { clientId: 'v4', clean: false })).sessionPresent).toBe(false);
    expect((await connect(gw, device, { clientId: 'v5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 60 } })).sessionPresent).toBe(false);
  });

  /** A gateway on a store that outlives it, and its restart on the same files. */
  async function restartable(overrides: Parameters<typeof startGateway>[0] = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'fleetgate-expiry-'));
    dirs.push(dir);
    const store = `sqlite:${join(dir, 'fleetgate.db')}`;
    const first = await gatewayWithFleet({ store, ...overrides });
    const restart = async () => {
      await first.gw.close();
      teardown.splice(0);
      const gw = await startGateway({ store, ...overrides });
      teardown.push(() => gw.close());
      return gw;
    };
    return { ...first, restart };
  }

  it('an MQTT 3.1.1 persistent session that expired while the gateway was down is gone after the restart', async () => {
    const { gw, fleet, device, restart } = await restartable({ mqttSessionExpiryMax: 1 });
    const { client } = await connect(gw, device, { clientId: 'short', clean: false });
    await client.subscribeAsync(`${fleet.topic}/#`, { qos: 1 });
    await end(client);
    // within its second, the restart keeps it
    const restarted = await restart();
    const resumed = await connect(restarted, device, { clientId: 'short', clean: false });
    expect(resumed.sessionPresent).toBe(true);
    await end(resumed.client);
    await wait(1500);
    const again = await restart();
    expect((await connect(again, device, { clientId: 'short', clean: false })).sessionPresent).toBe(false);
  });

  it('MQTT 5 Message Expiry holds across a restart: an expired queued or retained message is not sent, the others are', async () => {
    const { gw, fleet, device, sender, restart } = await restartable();
    const lasting = { clientId: 'lasting', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } } as const;
    const { client } = await connect(gw, device, lasting);
    await client.subscribeAsync(`${fleet.topic}/cmd`, { qos: 1 });
    await end(client);
    const v5 = { protocolVersion: 5 } as const;
    await send(gw, sender, `${fleet.topic}/state`, ['retained-expiring'], v5, { retain: true, properties: { messageExpiryInterval: 1 } });
    await send(gw, sender, `${fleet.topic}/cmd`, ['queued-expiring'], v5, { properties: { messageExpiryInterval: 1 } });
    await send(gw, sender, `${fleet.topic}/cmd`, ['queued-lasting'], v5, { properties: { messageExpiryInterval: 3600 } });
    await wait(1500);
    const restarted = await restart();

    const back = await connect(restarted, device, lasting);
    expect(back.sessionPresent).toBe(true);
    const seen = back.seen;
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['queued-lasting']);
    // A new subscriber to the retained message's topic: the marker sent after subscribing comes first.
    const reader = await connect(restarted, device);
    const read = reader.seen;
    await reader.client.subscribeAsync(`${fleet.topic}/state`, { qos: 1 });
    await send(restarted, sender, `${fleet.topic}/state`, ['marker']);
    await expect.poll(() => read, { timeout: 10_000 }).toEqual(['marker']);
  });
});
