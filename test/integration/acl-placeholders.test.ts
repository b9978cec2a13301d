import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestGateway } from '../helpers/gateway.ts';
import { startIdp, type TestIdp } from '../helpers/oidc.ts';

/**
 * ACL placeholders over real sockets, with tokens of a real OpenID Connect provider (issue 13 item 1). Over HTTP and
 * WebSocket %u and %c both stand for the token's subject, here the claim `dev` (FLEETGATE_OIDC_SUBJECT_CLAIM), so the
 * provider's token carries the bad name; over MQTT they are the connection's username and client id.
 */
let idp: TestIdp;
let gw: TestGateway;

const T = 'm/plant/c/telemetry';
const pack = JSON.stringify([{ n: 't', v: 1 }]);
const rules = (p: string) => [
  { permission: 'allow', action: 'all', topic: `${T}/${p}/#` },
  { permission: 'allow', action: 'all', topic: `${T}/dev-${p}` },
];

/**
 * Each bad name, with what the rules above would have granted with it: a topic to publish on and a filter to
 * subscribe to (null: the channel itself). U+0000 grants nothing a topic could name (every protocol refuses it in a
 * topic), so for it the probe shows that refusal.
 */
const kBad = [
  { desc: '+', value: '+', publish: 'thermostat-9/t', filter: 'thermostat-9/#' },
  { desc: '#', value: '#', publish: null, filter: '#' },
  { desc: 'a/b', value: 'a/b', publish: 'a/b', filter: 'a/b/#' },
  { desc: 'U+0000', value: '\u0000', publish: '\u0000/t', filter: '\u0000/#' },
  { desc: '$x', value: '$x', publish: '$x/t', filter: '$x/#' },
  { desc: 'empty', value: '', publish: 'dev-', filter: 'dev-' },
] as const;
const topicOf = (sub: string | null) => (sub === null ? T : `${T}/${sub}`);
const urlPath = (sub: string | null) => topicOf(sub).split('/').map(encodeURIComponent).join('/');
const clientFor = (placeholder: string, i: number) => `subject-${placeholder.slice(1)}-${i}`;

beforeAll(async () => {
  idp = await startIdp([
    ...kBad.flatMap(({ value }, i) => ['%u', '%c'].map((p) => ({ client_id: clientFor(p, i), claims: { dev: value, acl: rules(p) } }))),
    { client_id: 'good', claims: { dev: 'dev-1', acl: rules('%u') } },
    { client_id: 'mqtt-u', claims: { dev: 'mqtt-u', acl: rules('%u') } },
    { client_id: 'mqtt-c', claims: { dev: 'mqtt-c', acl: rules('%c') } },
    { client_id: 'role-u', claims: { dev: 'role-u', roles: ['sensor'] } },
    { client_id: 'domain-picker', claims: { dev: 'domain-picker', acl: [{ permission: 'allow', action: 'all', topic: 'm/%u/c/telemetry/#' }] } },
  ]);
  gw = await startGateway({
    oidcIssuer: idp.issuer, oidcAudience: 'urn:fleetgate', oidcAclClaim: 'acl', oidcSubjectClaim: 'dev',
    oidcRolesClaim: 'roles', oidcRoleAcl: JSON.stringify({ sensor: rules('%u') }),
  });
  await provisionFleet(gw.gateway, { route: 'plant', channelRoute: 'telemetry' });
  await provisionFleet(gw.gateway, { route: 'dom-b', channelRoute: 'telemetry' });
});
afterAll(async () => {
  await gw?.close();
  await idp?.close();
});

const publishOverHttp = (token: string, sub: string | null) =>
  http('POST', `${gw.http}/http/${urlPath(sub)}`, { headers: { 'content-type': 'application/senml+json', authorization: `Bearer ${token}` }, body: pack });
/** The WebSocket upgrade's status: 101 when it opened. */
const wsStatus = (token: string, sub: string | null) =>
  WsClient.connect(`${gw.ws}/ws/${urlPath(sub)}?authorization=${token}`).then((ws) => (ws.close(), 101), (err: { status: number }) => err.status);

/** The HTTP/WS answer a refused probe gets: forbidden, or, for U+0000, a topic no protocol accepts. */
const refusal = (value: string) => (value === '\u0000' ? { status: 400, code: 'FG_ERR_PARSE_TOPIC' } : { status: 403, code: 'FG_ERR_AUTHZ_FORBIDDEN' });

describe('ACL placeholders over HTTP and WebSocket (%u and %c: the token subject)', () => {
  it('a good subject publishes and subscribes in its own subtree', async () => {
    const token = await idp.token('good');
    expect((await publishOverHttp(token, 'dev-1/t')).status).toBe(202);
    expect(await wsStatus(token, 'dev-1/#')).toBe(101);
    expect((await publishOverHttp(token, 'thermostat-9/t')).status).toBe(403);
  });

  for (const placeholder of ['%u', '%c']) {
    for (const [i, { desc, value, publish, filter }] of kBad.entries()) {
      it(`${placeholder} = ${desc}: HTTP publish and WS publish/subscribe are refused`, async () => {
        const token = await idp.token(clientFor(placeholder, i));
        const { status, code } = refusal(value);
        expect(await publishOverHttp(token, publish)).toMatchObject({ status, json: { code } });
        expect(await wsStatus(token, publish)).toBe(status);
        expect(await wsStatus(token, filter)).toBe(status);
      });
    }
  }
});

interface Mqtt5 {
  client: mqtt.MqttClient;
  /** PUBACK reason code of a QoS 1 publish (0: accepted), or the reason code of the DISCONNECT it got */
  publish(topic: string): Promise<number | `disconnect ${number}`>;
  /** SUBACK reason code, or 'closed' */
  subscribe(filter: string): Promise<number | 'closed'>;
}

function connect5(token: string, clientId: string, username: string): Promise<Mqtt5> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${gw.gateway.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId, username, password: token });
    client.once('error', (err) => (client.end(true), reject(err)));
    client.once('connect', () => resolve({
      client,
      publish: (topic) => new Promise((done) => {
        client.once('disconnect', (packet) => done(`disconnect ${packet.reasonCode ?? 0}`));
        client.publish(topic, pack, { qos: 1 }, (err) => done(err ? ((err as { code?: number }).code ?? -1) : 0));
      }),
      // A refused SUBACK comes as an error that carries the packet; a filter with U+0000 closes the connection.
      subscribe: (f) => new Promise((done) => {
        client.once('close', () => done('closed'));
        client.subscribe(f, { qos: 0 }, (err, granted) => done((err as { packet?: { granted: number[] } } | null)?.packet?.granted[0] ?? granted?.[0]?.qos ?? -1));
      }),
    }));
  });
}

describe('ACL placeholders over MQTT 5 (%u: the username, %c: the client id)', () => {
  it('a good username and client id publish and subscribe in their own subtree', async () => {
    for (const [name, names] of [['mqtt-u', { username: 'dev-1', clientId: 'probe-good-u' }], ['mqtt-c', { username: 'x', clientId: 'dev-1' }]] as const) {
      const c = await connect5(await idp.token(name), names.clientId, names.username);
      expect(await c.publish(`${T}/dev-1/t`)).toBe(0);
      expect(await c.subscribe(`${T}/dev-1/#`)).toBe(0);
      expect(await c.publish(`${T}/thermostat-9/t`)).toBe(0x87);
      c.client.end(true);
    }
  });

  // aedes takes any name, U+0000 included; an empty client id is replaced by one the broker assigns, so %c is never
  // empty over MQTT (that row shows the refusal all the same). The U+0000 probes make malformed packets [MQTT-1.5.4-2]:
  // a topic holding it gets DISCONNECT 0x81, a filter closes the connection (each probed on its own connection).
  const expected = (value: string) => (value === '\u0000' ? { publish: 'disconnect 129', subscribe: 'closed' } : { publish: 0x87, subscribe: 0x87 });
  for (const [placeholder, token, names] of [
    ['username (%u)', 'mqtt-u', (value: string, desc: string) => ({ clientId: `probe-u-${desc}`, username: value })],
    ['client id (%c)', 'mqtt-c', (value: string) => ({ clientId: value, username: 'x' })],
  ] as const) {
    for (const { desc, value, publish, filter } of kBad) {
      it(`${placeholder} = ${desc}: publish and subscribe are refused`, async () => {
        const { clientId, username } = names(value, desc);
        const c = await connect5(await idp.token(token), clientId, username);
        expect(await c.publish(topicOf(publish))).toBe(expected(value).publish);
        const s = c.client.connected ? c : await connect5(await idp.token(token), clientId, username);
        expect(await s.subscribe(topicOf(filter))).toBe(expected(value).subscribe);
        c.client.end(true);
        s.client.end(true);
      });
    }
  }

  it('FLEETGATE_OIDC_ROLE_ACL rules are filled the same way', async () => {
    const token = await idp.token('role-u');
    const good = await connect5(token, 'probe-role-good', 'dev-1');
    expect(await good.publish(`${T}/dev-1/t`)).toBe(0);
    good.client.end(true);
    const bad = await connect5(token, 'probe-role-bad', '+');
    expect(await bad.publish(`${T}/thermostat-9/t`)).toBe(0x87);
    expect(await bad.subscribe(`${T}/thermostat-9/#`)).toBe(0x87);
    bad.client.end(true);
  });

  it('a rule with a placeholder in the domain level is refused with the token: username dom-b reaches no other domain', async () => {
    const token = await idp.token('domain-picker');
    const message = 'malformed "acl" claim: "m/%u/c/telemetry/#": %c and %u may only stand in subtopic levels, after the channel';
    await expect(connect5(token, 'probe-picker', 'dom-b')).rejects.toMatchObject({ code: 0x86 });
    expect(await publishOverHttp(token, null)).toMatchObject({ status: 401, json: { code: 'FG_ERR_AUTHN_INVALID', message } });
    expect((await http('POST', `${gw.http}/http/m/dom-b/c/telemetry`, { headers: { 'content-type': 'application/senml+json', authorization: `Bearer ${token}` }, body: pack })).status).toBe(401);
  });
});
