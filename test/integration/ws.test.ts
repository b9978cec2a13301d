import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { http, publish, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let app: TestClient;
let both: TestClient;

const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);
const names = (frames: Buffer[]) => frames.map((f) => JSON.parse(f.toString())[0].n);
const url = (path: string, secret?: string) => `${gw.ws}${path}${secret === undefined ? '' : `?authorization=${secret}`}`;

beforeAll(async () => {
  gw = await startGateway({ maxPayload: 64 * 1024, wsMaxBackpressure: 64 * 1024 });
  fleet = await provisionFleet(gw.gateway);
  device = await fleet.client('device', ['publish']);
  app = await fleet.client('app', ['subscribe']);
  both = await fleet.client('both', ['publish', 'subscribe']);
});
afterAll(() => gw.close());

async function refusedUpgrade(target: string, headers: Record<string, string> = {}) {
  const err = await WsClient.connect(target, headers).then(() => undefined, (e: { status: number; body: unknown }) => e);
  expect(err, 'upgrade should have been refused').toBeDefined();
  return err!;
}

describe('WebSocket: fan-out', () => {
  it('an HTTP publish reaches two subscribers of the channel, not one of another channel nor an unconnected client', async () => {
    const other = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'other' });
    await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [app.id], channel_ids: [other.id], types: ['subscribe'] });
    const first = await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret));
    const second = await WsClient.connect(url(`/ws/${fleet.topic}`), { authorization: `Client ${both.secret}` });
    const elsewhere = await WsClient.connect(url(`/ws/m/${fleet.domain.id}/c/${other.id}`, app.secret));
    const stranger = await fleet.client('stranger', []);
    const refused = await refusedUpgrade(url(`/ws/${fleet.topic}`, stranger.secret));
    expect(refused.status).toBe(403);

    expect((await publish(gw.http, `/http/${fleet.topic}`, device.secret, kMagistralaPack)).status).toBe(202);
    const [a, b] = [await first.next(), await second.next()];
    expect(a.equals(b)).toBe(true);
    expect(JSON.parse(a.toString())[2]).toMatchObject({ n: 'some-base-name:voltage', v: 120.1 });
    expect(await elsewhere.drain()).toEqual([]);
    for (const c of [first, second, elsewhere]) c.close();
  });

  it('delivers each message as one binary frame', async () => {
    const sub = await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret));
    const binary = new Promise<boolean>((resolve) => sub.socket.once('message', (_d, isBinary) => resolve(isBinary)));
    await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack('x'));
    expect(await binary).toBe(true);
    sub.close();
  });

  it('publishes frames sent by a client (text or binary) to subscribers, the sender included (Magistrala behaviour)', async () => {
    const sub = await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret));
    const talker = await WsClient.connect(url(`/ws/${fleet.topic}`, both.secret));
    talker.send(pack('from-ws-text'));
    talker.send(Buffer.from(pack('from-ws-binary')));
    expect(names([await sub.next(), await sub.next()])).toEqual(['from-ws-text', 'from-ws-binary']);
    expect(names([await talker.next(), await talker.next()])).toEqual(['from-ws-text', 'from-ws-binary']);
    sub.close();
    talker.close();
  });

  it('follows MQTT filter rules for subtopics', async () => {
    const exact = await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret));
    const all = await WsClient.connect(url(`/ws/${fleet.topic}/%23`, app.secret));
    const room = await WsClient.connect(url(`/ws/${fleet.topic}/room/%23`, app.secret));
    const plus = await WsClient.connect(url(`/ws/${fleet.topic}/+/temp`, app.secret));
    const legacy = await WsClient.connect(url(`/ws/channels/${fleet.channel.id}/messages/room/1`, app.secret));
    for (const sub of ['', '/room', '/room/1', '/hall/temp', '/room/temp']) {
      expect((await publish(gw.http, `/http/${fleet.topic}${sub}`, device.secret, pack('at' + (sub.replaceAll('/', '.') || '.none')))).status).toBe(202);
    }
    expect(names(await exact.drain())).toEqual(['at.none']);
    expect(names(await all.drain(0))).toEqual(['at.none', 'at.room', 'at.room.1', 'at.hall.temp', 'at.room.temp']);
    expect(names(await room.drain(0))).toEqual(['at.room', 'at.room.1', 'at.room.temp']);
    expect(names(await plus.drain(0))).toEqual(['at.hall.temp', 'at.room.temp']);
    expect(names(await legacy.drain(0))).toEqual(['at.room.1']);
    for (const c of [exact, all, room, plus, legacy]) c.close();
  });

  it('drops a slow subscriber (close 1013) without slowing the publisher or losing messages of the others', async () => {
    const channel = await gw.gateway.provisioning.createChannel(fleet.domain.id, { name: 'bulk', payload_format: 'raw' });
    await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [both.id], channel_ids: [channel.id], types: ['publish', 'subscribe'] });
    const topic = `/ws/m/${fleet.domain.id}/c/${channel.id}`;
    // The slow one never reads: pausing its socket lets the server's send buffer fill up.
    const slow = new WebSocket(url(topic, both.secret));
    await new Promise((r) => slow.once('open', r));
    const slowClosed = new Promise<number>((resolve) => slow.once('close', (code) => resolve(code)));
    slow.pause();
    const fast = await WsClient.connect(url(topic, both.secret));
    let received = 0;
    fast.socket.on('message', () => received++);
    const chunk = Buffer.alloc(60_000, 1);
    // 24 MB against a 64 KiB budget: well past what loopback's kernel buffers (a few MB) can absorb.
    const total = 400;
    for (let i = 0; i < total; i++) {
      const res = await http('POST', `${gw.http}/http/m/${fleet.domain.id}/c/${channel.id}`, { headers: { authorization: both.secret }, body: chunk });
      expect(res.status).toBe(202);
    }
    await expect.poll(() => received, { timeout: 10_000 }).toBe(total);
    slow.resume();
    expect(await slowClosed).toBe(1013);
    slow.terminate();
    const metrics = await http('GET', gw.http + '/metrics');
    expect(metrics.text).toMatch(/fleetgate_subscriber_drops_total\{protocol="ws"\} [1-9]/);
    fast.close();
  });
});

describe('WebSocket: refusals', () => {
  it.each([
    ['no credentials', () => url(`/ws/${fleet.topic}`), 401, 'FG_ERR_AUTHN_MISSING'],
    ['a wrong secret', () => url(`/ws/${fleet.topic}`, 'wrong'), 401, 'FG_ERR_AUTHN_INVALID'],
    ['a malformed path', () => url(`/ws/m/${fleet.domain.id}/c/${fleet.channel.id}/a//b`, app.secret), 400, 'FG_ERR_PARSE_TOPIC'],
    ['"#" not last', () => url(`/ws/${fleet.topic}/%23/a`, app.secret), 400, 'FG_ERR_PARSE_TOPIC'],
    ['an unknown channel', () => url(`/ws/m/${fleet.domain.id}/c/nope`, app.secret), 404, 'FG_ERR_NOT_FOUND'],
  ])('refuses the upgrade for %s', async (_name, target, status, code) => {
    const err = await refusedUpgrade(target());
    expect(err).toMatchObject({ status, body: { code } });
  });

  async function closedWith(client: WsClient, send: string | Buffer, code: number, errorCode: string) {
    client.send(send);
    const closed = await client.closed;
    expect(closed.code).toBe(code);
    expect(closed.reason).toMatch(new RegExp(`^${errorCode}: `));
  }

  it('closes 1007 on invalid SenML, naming the rule, and publishes nothing', async () => {
    const sub = await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret));
    const pub = await WsClient.connect(url(`/ws/${fleet.topic}`, device.secret));
    await closedWith(pub, '[{"n":"bad name","v":1}]', 1007, 'FG_ERR_SENML_INVALID');
    expect(await sub.drain()).toEqual([]);
    sub.close();
  });

  it('closes 1007 on a frame that is not JSON', async () => {
    await closedWith(await WsClient.connect(url(`/ws/${fleet.topic}`, device.secret)), '{', 1007, 'FG_ERR_PAYLOAD_MALFORMED');
  });

  it('closes 1009 on a frame over the limit', async () => {
    await closedWith(await WsClient.connect(url(`/ws/${fleet.topic}`, device.secret)), Buffer.alloc(70_000, 0x20), 1009, 'FG_ERR_PARSE_TOO_LARGE');
  });

  it('closes 1008 when a subscribe-only client publishes, or anyone publishes on a wildcard path', async () => {
    await closedWith(await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret)), pack('x'), 1008, 'FG_ERR_AUTHZ_FORBIDDEN');
    await closedWith(await WsClient.connect(url(`/ws/${fleet.topic}/%23`, both.secret)), pack('x'), 1008, 'FG_ERR_PARSE_TOPIC');
  });

  it('keeps serving others after abrupt disconnects, and counts connections back to zero', async () => {
    const victims = await Promise.all(Array.from({ length: 5 }, () => WsClient.connect(url(`/ws/${fleet.topic}`, app.secret))));
    for (const v of victims) v.socket.terminate();
    const survivor = await WsClient.connect(url(`/ws/${fleet.topic}`, app.secret));
    await publish(gw.http, `/http/${fleet.topic}`, device.secret, pack('still-here'));
    expect(names([await survivor.next()])).toEqual(['still-here']);
    survivor.close();
    await survivor.closed;
    await expect.poll(async () => (await http('GET', gw.http + '/metrics')).text.match(/fleetgate_connections\{protocol="ws"\} (\d+)/)?.[1]).toBe('0');
  });
});
