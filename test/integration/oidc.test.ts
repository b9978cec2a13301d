import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestGateway } from '../helpers/gateway.ts';
import { startIdp, type TestIdp } from '../helpers/oidc.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

let idp: TestIdp;
let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;

const publishAs = (token: string, path: string) =>
  http('POST', `${gw.http}/http/${path}`, { headers: { 'content-type': 'application/senml+json', authorization: `Bearer ${token}` }, body: kMagistralaPack });
const decode = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());

beforeAll(async () => {
  idp = await startIdp([
    { client_id: 'sensor-42' },
    { client_id: 'stranger' },
    { client_id: 'acl-device', claims: { acl: [{ permission: 'allow', action: 'all', topic: 'm/plant/c/telemetry/%c/#' }, { permission: 'deny', action: 'all', topic: '#' }] } },
    { client_id: 'bad-acl', claims: { acl: 'everything' } },
    { client_id: 'thermostat-app', device: true },
    { client_id: 'acl-mqtt', claims: { acl: { all: ['m/plant/c/telemetry/%c/#'] } } },
  ]);
  gw = await startGateway({ oidcIssuer: idp.issuer, oidcAudience: 'urn:fleetgate', oidcAclClaim: 'acl', oidcJwksCooldown: 0 });
  fleet = await provisionFleet(gw.gateway, { route: 'plant', channelRoute: 'telemetry' });
  // The device's client is provisioned with the IdP subject as its external id (DESIGN.md §4.2).
  const { client } = await gw.gateway.provisioning.createClient(fleet.domain.id, { name: 'sensor-42', external_id: 'sensor-42' });
  await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [client.id], channel_ids: [fleet.channel.id] });
});
afterAll(async () => {
  await gw.close();
  await idp.close();
});

describe('tokens from an external OpenID Connect provider (oidc-provider, client credentials)', () => {
  it('a device publishes over HTTP and subscribes over WS with its IdP token, mapped to its client by subject', async () => {
    const token = await idp.token('sensor-42');
    expect(decode(token)).toMatchObject({ iss: idp.issuer, sub: 'sensor-42', aud: 'urn:fleetgate' });
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${token}`);
    expect((await publishAs(token, fleet.topic)).status).toBe(202);
    expect(JSON.parse((await ws.next()).toString())).toHaveLength(3);
    ws.close();
  });

  it('a headless device signs in with the device authorization grant (RFC 8628) and publishes with that token', async () => {
    // The person who approves the device signs in as "thermostat-7"; the token's subject names the device's client.
    const { client } = await gw.gateway.provisioning.createClient(fleet.domain.id, { name: 'thermostat', external_id: 'thermostat-7' });
    await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [client.id], channel_ids: [fleet.channel.id], types: ['publish'] });
    const token = await idp.deviceToken('thermostat-app', 'thermostat-7');
    expect(decode(token)).toMatchObject({ iss: idp.issuer, sub: 'thermostat-7', aud: 'urn:fleetgate', client_id: 'thermostat-app' });
    expect((await publishAs(token, fleet.topic)).status).toBe(202);
  });

  it('refuses a valid IdP token whose subject has no client (401)', async () => {
    expect((await publishAs(await idp.token('stranger'), fleet.topic)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'no client is provisioned for this token subject' });
  });

  it('takes channel rights from the ACL claim, with %c, first matching rule deciding', async () => {
    const token = await idp.token('acl-device');
    expect((await publishAs(token, 'm/plant/c/telemetry/acl-device/temp')).status).toBe(202);
    expect((await publishAs(token, `m/${fleet.domain.id}/c/${fleet.channel.id}/acl-device`)).status).toBe(202);
    expect((await publishAs(token, 'm/plant/c/telemetry/someone-else')).json).toMatchObject({ code: 'FG_ERR_AUTHZ_FORBIDDEN' });
    expect((await publishAs(token, 'm/plant/c/telemetry')).status).toBe(403);
    const own = await WsClient.connect(`${gw.ws}/ws/m/plant/c/telemetry/acl-device/%23?authorization=${token}`);
    own.close();
    // A subscription wider than the rule is refused: the rule must cover all of it.
    await expect(WsClient.connect(`${gw.ws}/ws/m/plant/c/telemetry/%23?authorization=${token}`)).rejects.toMatchObject({ status: 403 });
    expect((await publishAs(await idp.token('bad-acl'), fleet.topic)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'malformed "acl" claim' });
  });

  it('refuses a tampered IdP token and a fleetgate-signed token pretending to be the IdP', async () => {
    const token = await idp.token('sensor-42');
    const [h, p, s] = token.split('.');
    const claims = { ...decode(token), sub: 'someone' };
    expect((await publishAs(`${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`, fleet.topic)).status).toBe(401);
    expect((await publishAs(`${h}.${p}.${s!.slice(0, -4)}AAAA`, fleet.topic)).status).toBe(401);
  });

  it('follows a key rotation at the IdP: an unknown kid refetches the JWKS once, then verifies', async () => {
    idp.rotate();
    const token = await idp.token('sensor-42');
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid).toBe('idp-key-2');
    expect((await publishAs(token, fleet.topic)).status).toBe(202);
  });
});

/** MQTT.js 3.1.1 to `port`: resolves once connected, rejects with the CONNACK code. */
function mqttConnect(port: number, options: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, ...options });
    client.once('connect', () => resolve(client));
    client.once('error', (err) => (client.end(true), reject(err)));
  });
}

describe('identity provider tokens over MQTT', () => {
  it('reads %c in ACL rules as the MQTT client id', async () => {
    const token = await idp.token('acl-mqtt');
    const watcher = await mqttConnect(gw.gateway.mqttPort!, { password: token, clientId: 'dev-9-watch', username: 'x' });
    const seen: string[] = [];
    // The rule allows this client id's own subtree only: a subscription to it is granted, with this client id.
    const device = await mqttConnect(gw.gateway.mqttPort!, { password: token, clientId: 'dev-9', username: 'x' });
    await new Promise((resolve) => device.subscribe('m/plant/c/telemetry/dev-9/#', resolve));
    device.on('message', (t) => seen.push(t));
    device.publish('m/plant/c/telemetry/dev-9/temp', JSON.stringify([{ n: 't', v: 1 }]));
    await expect.poll(() => seen.length).toBe(1);
    // The subject's subtree is not this connection's: publishing there ends it.
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    device.publish('m/plant/c/telemetry/acl-mqtt/temp', JSON.stringify([{ n: 't', v: 1 }]));
    await closed;
    watcher.end(true);
    device.end(true);
  });

  it('FLEETGATE_OIDC_MATCH_USERNAME_TO_SUBJECT / _CLIENT_ID_TO_SUBJECT: CONNACK 5 unless they equal the subject', async () => {
    const strict = await startGateway({ oidcIssuer: idp.issuer, oidcAudience: 'urn:fleetgate', oidcMatchUsernameToSubject: 'true', oidcMatchClientIdToSubject: 'true' });
    try {
      const f = await provisionFleet(strict.gateway);
      await strict.gateway.provisioning.createClient(f.domain.id, { name: 'sensor-42', external_id: 'sensor-42' });
      const token = await idp.token('sensor-42');
      const port = strict.gateway.mqttPort!;
      const ok = await mqttConnect(port, { username: 'sensor-42', clientId: 'sensor-42', password: token });
      ok.end(true);
      await expect(mqttConnect(port, { username: 'someone', clientId: 'sensor-42', password: token })).rejects.toMatchObject({ code: 5 });
      await expect(mqttConnect(port, { username: 'sensor-42', clientId: 'other-id', password: token })).rejects.toMatchObject({ code: 5 });
    } finally {
      await strict.close();
    }
  });
});

describe('a JWKS URL instead of discovery', () => {
  it('verifies the provider\'s tokens with keys fetched from FLEETGATE_OIDC_JWKS_URL', async () => {
    const direct = await startGateway({ oidcIssuer: idp.issuer, oidcJwksUrl: `${idp.issuer}/jwks`, oidcAudience: 'urn:fleetgate' });
    try {
      const f = await provisionFleet(direct.gateway);
      const { client } = await direct.gateway.provisioning.createClient(f.domain.id, { name: 'sensor-42', external_id: 'sensor-42' });
      await direct.gateway.provisioning.connect(f.domain.id, { client_ids: [client.id], channel_ids: [f.channel.id] });
      const res = await http('POST', `${direct.http}/http/${f.topic}`, { headers: { authorization: `Bearer ${await idp.token('sensor-42')}` }, body: kMagistralaPack });
      expect(res.status).toBe(202);
    } finally {
      await direct.close();
    }
  });
});

describe('an identity provider that cannot be reached', () => {
  it('does not stop the gateway: secrets work, IdP tokens are refused', async () => {
    const down = await startGateway({ oidcIssuer: 'http://127.0.0.1:9/', oidcJwksCooldown: 3600 });
    try {
      const f = await provisionFleet(down.gateway);
      const device = await f.client('device', ['publish']);
      const bySecret = await http('POST', `${down.http}/http/${f.topic}`, { headers: { authorization: device.secret }, body: kMagistralaPack });
      expect(bySecret.status).toBe(202);
      const byToken = await http('POST', `${down.http}/http/${f.topic}`, { headers: { authorization: `Bearer ${await idp.token('sensor-42')}` }, body: kMagistralaPack });
      expect(byToken.status).toBe(401);
    } finally {
      await down.close();
    }
  });
});
