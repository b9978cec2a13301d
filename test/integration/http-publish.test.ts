import { connect } from 'node:net';
import { encode as encodeCbor } from 'cbor-x';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, kSenmlJson, publish, run, WsClient } from '../helpers/clients.ts';
import { startWithListener, type provisionFleet, type TestClient, type TestGateway } from '../helpers/gateway.ts';
import { kInvalidPacks, kMagistralaPack } from '../fixtures/senml.ts';

let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;
let device: TestClient;
let listener: WsClient;
const b64 = (s: string) => Buffer.from(s).toString('base64');

let setup: Awaited<ReturnType<typeof startWithListener>>;
beforeAll(async () => {
  ({ gw, fleet, device, listener } = setup = await startWithListener({ maxPayload: 4096 }, { route: 'acme', channelRoute: 'telemetry' }));
});
afterAll(() => setup.close());

/** Publishes and proves both the 202 and the delivery (or, for refusals, that nothing was delivered). */
async function expectAccepted(path: string, headers: Record<string, string>, body = kMagistralaPack) {
  const res = await http('POST', gw.http + path, { headers: { ...kSenmlJson, ...headers }, body });
  expect(res.status, res.text).toBe(202);
  expect(res.text).toBe('');
  return JSON.parse((await listener.next()).toString());
}

async function expectRefused(res: Promise<{ status: number; json: any }>, status: number, code: string) {
  const reply = await res;
  expect(reply.status).toBe(status);
  expect(reply.json).toMatchObject({ code, message: expect.any(String) });
  expect(await listener.drain(100)).toEqual([]);
  return reply;
}

describe('HTTP publish: path forms (DESIGN.md §3)', () => {
  const forms = () => [
    `/http/${fleet.topic}`,
    `/${fleet.topic}`,
    `/http/m/acme/c/telemetry`,
    `/m/${fleet.domain.id}/c/telemetry/room/1`,
    `/http/channels/${fleet.channel.id}/messages`,
    `/channels/${fleet.channel.id}/messages/room/2`,
  ];
  it('accepts every path form, with ids or routes, and delivers resolved SenML', async () => {
    for (const path of forms()) {
      const records = await expectAccepted(path, { authorization: `Client ${device.secret}` });
      // Resolved records come in chronological order (RFC 8428 §4.6): the voltage, at the base time, is the last.
      expect(records.map((r: { t: number }) => r.t)).toEqual([1.276020071001e9, 1.276020072001e9, 1.276020076001e9]);
      expect(records[2]).toMatchObject({ n: 'some-base-name:voltage', u: 'V', v: 120.1, t: 1.276020076001e9 });
    }
  });
});

describe('HTTP publish: credential forms (DESIGN.md §4.1)', () => {
  it.each([
    ['Client <secret>', () => `Client ${device.secret}`],
    ['Thing <secret> (Mainflux)', () => `Thing ${device.secret}`],
    ['bare secret', () => device.secret],
    ['Basic clientId:secret', () => `Basic ${b64(`${device.id}:${device.secret}`)}`],
  ])('accepts %s', async (_name, header) => {
    await expectAccepted(`/http/${fleet.topic}`, { authorization: header() });
  });
});

describe('HTTP publish: the Magistrala curl example', () => {
  it('returns 202 for the documented command, host and port changed', async () => {
    const { stdout, code } = await run('curl', [
      '-sSi', '-X', 'POST', '-H', 'Content-Type: application/senml+json', '-H', `Authorization: Client ${device.secret}`,
      `${gw.http}/http/${fleet.topic}`, '-d', kMagistralaPack,
    ]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^HTTP\/1\.1 202 Accepted/);
    expect(JSON.parse((await listener.next()).toString())).toHaveLength(3);
  });
});

describe('HTTP publish: refusals (DESIGN.md §7), nothing published', () => {
  const path = () => `/http/${fleet.topic}`;

  it('401 + WWW-Authenticate without credentials', async () => {
    const res = await expectRefused(publish(gw.http, path(), undefined, kMagistralaPack), 401, 'FG_ERR_AUTHN_MISSING');
    expect(res).toMatchObject({ headers: { 'www-authenticate': 'Client realm="fleetgate"' } });
  });

  it('401 for a wrong secret, a wrong Basic pair and malformed Basic', async () => {
    await expectRefused(publish(gw.http, path(), 'not-a-secret', kMagistralaPack), 401, 'FG_ERR_AUTHN_INVALID');
    const other = await fleet.client('other', []);
    await expectRefused(http('POST', gw.http + path(), { headers: { ...kSenmlJson, authorization: `Basic ${b64(`${other.id}:${device.secret}`)}` }, body: kMagistralaPack }), 401, 'FG_ERR_AUTHN_INVALID');
    await expectRefused(http('POST', gw.http + path(), { headers: { ...kSenmlJson, authorization: `Basic ${b64('nocolon')}` }, body: kMagistralaPack }), 401, 'FG_ERR_AUTHN_INVALID');
  });

  it('403 for a client connected only to subscribe, or not connected', async () => {
    const subscriber = await fleet.client('subscriber-only', ['subscribe']);
    await expectRefused(publish(gw.http, path(), subscriber.secret, kMagistralaPack), 403, 'FG_ERR_AUTHZ_FORBIDDEN');
    const loner = await fleet.client('loner', []);
    await expectRefused(publish(gw.http, path(), loner.secret, kMagistralaPack), 403, 'FG_ERR_AUTHZ_FORBIDDEN');
  });

  it('403 for another domain, whether or not it exists; 404 for an unknown channel of its own domain', async () => {
    const other = await gw.gateway.provisioning.createDomain({ name: 'other' });
    await expectRefused(publish(gw.http, `/http/m/${other.id}/c/${fleet.channel.id}`, device.secret, kMagistralaPack), 403, 'FG_ERR_AUTHZ_FORBIDDEN');
    await expectRefused(publish(gw.http, `/http/m/no-such-domain/c/${fleet.channel.id}`, device.secret, kMagistralaPack), 403, 'FG_ERR_AUTHZ_FORBIDDEN');
    await expectRefused(publish(gw.http, `/http/m/${fleet.domain.id}/c/no-such-channel`, device.secret, kMagistralaPack), 404, 'FG_ERR_NOT_FOUND');
    await expectRefused(publish(gw.http, `/http/channels/no-such-channel/messages`, device.secret, kMagistralaPack), 404, 'FG_ERR_NOT_FOUND');
  });

  it.each([
    ['a wildcard subtopic', '/%23'],
    ['an empty level', '/a//b'],
    ['a space', '/a%20b'],
    ['a NATS wildcard', '/a*'],
  ])('400 for %s', async (_name, suffix) => {
    await expectRefused(publish(gw.http, path() + suffix, device.secret, kMagistralaPack), 400, 'FG_ERR_PARSE_TOPIC');
  });

  it('415 for a content type the channel does not take', async () => {
    const res = await expectRefused(publish(gw.http, path(), device.secret, kMagistralaPack, { 'content-type': 'text/plain' }), 415, 'FG_ERR_PARSE_MEDIA_TYPE');
    expect(res.json.message).toContain('application/senml+json');
    await expectRefused(publish(gw.http, path(), device.secret, kMagistralaPack, { 'content-type': 'application/senml+cbor' }), 415, 'FG_ERR_PARSE_MEDIA_TYPE');
  });

  it('accepts content type parameters and a missing content type', async () => {
    await expectAccepted(path(), { authorization: device.secret, 'content-type': 'application/senml+json; charset=utf-8' });
    const res = await http('POST', gw.http + path(), { headers: { authorization: device.secret }, body: kMagistralaPack });
    expect(res.status).toBe(202);
    await listener.next();
  });

  it('400 for an empty body', async () => {
    await expectRefused(publish(gw.http, path(), device.secret, ''), 400, 'FG_ERR_PARSE_EMPTY');
  });

  it('400 for a body that is not JSON', async () => {
    await expectRefused(publish(gw.http, path(), device.secret, '[{"n":'), 400, 'FG_ERR_PAYLOAD_MALFORMED');
  });

  it.each(kInvalidPacks)('400 naming rule $rule and record $index', async ({ rule, index, pack }) => {
    const res = await expectRefused(publish(gw.http, path(), device.secret, pack), 400, 'FG_ERR_SENML_INVALID');
    expect(res.json).toMatchObject({ rule, index });
  });

  it('413 when Content-Length announces too much, before reading it', async () => {
    await expectRefused(publish(gw.http, path(), device.secret, 'x'.repeat(5000)), 413, 'FG_ERR_PARSE_TOO_LARGE');
  });

  it('413 for a chunked body that grows past the limit while streaming', async () => {
    const { stdout } = await run('curl', [
      '-sS', '-X', 'POST', '-H', 'Transfer-Encoding: chunked', '-H', 'Content-Type: application/senml+json',
      '-H', `Authorization: Client ${device.secret}`, '--data-binary', '@-', '-w', '\n%{http_code}', `${gw.http}${path()}`,
    ], { input: '[' + '{"n":"x","v":1},'.repeat(400) + '{"n":"x","v":1}]' });
    const [body, status] = stdout.trim().split('\n');
    expect(status).toBe('413');
    expect(JSON.parse(body!)).toMatchObject({ code: 'FG_ERR_PARSE_TOO_LARGE' });
    expect(await listener.drain(100)).toEqual([]);
  });

  it('404 with a code for an unknown route', async () => {
    const res = await http('GET', gw.http + '/nowhere');
    expect(res.status).toBe(404);
    expect(res.json).toMatchObject({ code: 'FG_ERR_ROUTE_NOT_FOUND' });
  });
});

describe('HTTP publish: channel payload formats', () => {
  it('senml+cbor in, normalised senml+cbor out; json and raw pass through; each checks its content type', async () => {
    const p = gw.gateway.provisioning;
    const cases = [
      { format: 'senml+cbor' as const, type: 'application/senml+cbor', body: encodeCbor([new Map<number, unknown>([[0, 'temp'], [2, 21.5]])]) },
      { format: 'json' as const, type: 'application/json', body: Buffer.from('{"temp":21.5}') },
      { format: 'raw' as const, type: 'application/octet-stream', body: Buffer.from([0, 1, 2, 255]) },
    ];
    for (const c of cases) {
      const channel = await p.createChannel(fleet.domain.id, { name: c.format, payload_format: c.format });
      await p.connect(fleet.domain.id, { client_ids: [device.id], channel_ids: [channel.id], types: ['publish', 'subscribe'] });
      const ws = await WsClient.connect(`${gw.ws}/ws/m/${fleet.domain.id}/c/${channel.id}?authorization=${device.secret}`);
      const res = await publish(gw.http, `/http/m/${fleet.domain.id}/c/${channel.id}`, device.secret, c.body, { 'content-type': c.type });
      expect(res.status, res.text).toBe(202);
      const got = await ws.next();
      if (c.format === 'senml+cbor') expect(got[0]).toBe(0x81); // a one-element CBOR array, resolved (t added)
      else expect(got).toEqual(c.body);
      if (c.format === 'json') {
        const bad = await publish(gw.http, `/http/m/${fleet.domain.id}/c/${channel.id}`, device.secret, '{oops', { 'content-type': c.type });
        expect(bad.json).toMatchObject({ code: 'FG_ERR_PAYLOAD_MALFORMED' });
      }
      ws.close();
    }
  });
});

describe('HTTP publish: connection handling', () => {
  it('answers pipelined requests on one connection, in order, refusals included', async () => {
    const url = new URL(gw.http);
    const request = (secret: string) =>
      `POST /http/${fleet.topic} HTTP/1.1\r\nHost: x\r\nContent-Type: application/senml+json\r\nAuthorization: Client ${secret}\r\nContent-Length: ${kMagistralaPack.length}\r\n\r\n${kMagistralaPack}`;
    const socket = connect(Number(url.port), url.hostname);
    const reply = new Promise<string>((resolve) => {
      let data = '';
      socket.on('data', (d) => {
        data += d;
        if ((data.match(/HTTP\/1\.1/g) ?? []).length === 10) resolve(data);
      });
    });
    socket.write(Array.from({ length: 10 }, (_, i) => request(i === 4 ? 'wrong' : device.secret)).join(''));
    const statuses = [...(await reply).matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
    socket.destroy();
    expect(statuses).toEqual(['202', '202', '202', '202', '401', '202', '202', '202', '202', '202']);
    for (let i = 0; i < 9; i++) await listener.next();
  });
});
