import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, run, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway, type TestGateway } from '../helpers/gateway.ts';
import { startIdp, type TestIdp } from '../helpers/oidc.ts';
import { kMagistralaPack } from '../fixtures/senml.ts';

let idp: TestIdp;
let gw: TestGateway;
let fleet: Awaited<ReturnType<typeof provisionFleet>>;

const publishAs = (token: string, path: string, base = gw.http) =>
  http('POST', `${base}/http/${path}`, { headers: { 'content-type': 'application/senml+json', authorization: `Bearer ${token}` }, body: kMagistralaPack });
const decode = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
const kidOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
const pack = (name: string) => JSON.stringify([{ n: name, v: 1 }]);
const nameOf = (message: Buffer): string => JSON.parse(message.toString())[0].n;

beforeAll(async () => {
  idp = await startIdp([
    { client_id: 'sensor-42' },
    { client_id: 'stranger' },
    { client_id: 'acl-device', claims: { acl: [{ permission: 'allow', action: 'all', topic: 'm/plant/c/telemetry/%c/#' }, { permission: 'deny', action: 'all', topic: '#' }] } },
    { client_id: 'bad-acl', claims: { acl: 'everything' } },
    { client_id: 'thermostat-app', device: true },
    { client_id: 'acl-mqtt', claims: { acl: { all: ['m/plant/c/telemetry/%c/#'] } } },
    // Keycloak puts realm roles in realm_access.roles.
    { client_id: 'role-sensor', claims: { realm_access: { roles: ['offline_access', 'sensor'] } } },
    { client_id: 'role-viewer', claims: { realm_access: { roles: ['viewer'] } } },
    { client_id: 'role-none', claims: { realm_access: { roles: ['offline_access'] } } },
    { client_id: 'newcomer' },
  ]);
  // A 1 s clock tolerance: connections end at exp + tolerance, and the expiry tests wait for that.
  gw = await startGateway({ oidcIssuer: idp.issuer, oidcAudience: 'urn:fleetgate', oidcAclClaim: 'acl', oidcJwksCooldown: 0, jwtClockTolerance: 1 });
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
    expect((await publishAs(await idp.token('bad-acl'), fleet.topic)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'malformed "acl" claim: expected a list of rules or {"pub"|"sub"|"all": [topics]}' });
  });

  it('closes a WebSocket opened with an ACL-claim token at its exp (+ clock tolerance), and refuses the token from then on', async () => {
    idp.setAccessTokenTtl(2);
    const token = await idp.token('acl-device').finally(() => idp.setAccessTokenTtl(undefined));
    const ws = await WsClient.connect(`${gw.ws}/ws/m/plant/c/telemetry/acl-device?authorization=${token}`);
    expect(await ws.closed).toEqual({ code: 1008, reason: 'FG_ERR_AUTHN_EXPIRED: token expired' });
    // The connection ended when the token stopped being accepted: a new request with it is refused too.
    expect((await publishAs(token, 'm/plant/c/telemetry/acl-device')).json).toMatchObject({ code: 'FG_ERR_AUTHN_EXPIRED' });
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
    expect(kidOf(token)).toBe('idp-key-2');
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

/**
 * The device authorization grant as a device runs it (openid-client), the person approving as `login`: access token,
 * id_token and refresh token, and the refresh as the device would do it.
 */
async function deviceSignIn(login: string) {
  const provider = await oidc.discovery(new URL(idp.issuer), 'thermostat-app', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
  const codes = await oidc.initiateDeviceAuthorization(provider, { scope: 'openid offline_access', resource: 'urn:fleetgate' });
  await idp.approveDevice(codes.verification_uri_complete!, login);
  // Approved already: poll at once, not after RFC 8628's default 5 s.
  const tokens = await oidc.pollDeviceAuthorizationGrant(provider, { ...codes, interval: 0 });
  return { tokens, refresh: () => oidc.refreshTokenGrant(provider, tokens.refresh_token!, { resource: 'urn:fleetgate' }) };
}

/** A client of the main fleet whose external id is `subject`, allowed to publish and subscribe. */
async function deviceClient(subject: string): Promise<void> {
  const { client } = await gw.gateway.provisioning.createClient(fleet.domain.id, { name: subject, external_id: subject });
  await gw.gateway.provisioning.connect(fleet.domain.id, { client_ids: [client.id], channel_ids: [fleet.channel.id] });
}

describe('a device signed in with the device authorization grant (RFC 8628)', () => {
  beforeAll(() => deviceClient('thermostat-8'));

  it('uses its access token as MQTT password (MQTT.js, mosquitto_pub), WebSocket ?authorization= and HTTP Bearer', async () => {
    const token = (await deviceSignIn('thermostat-8')).tokens.access_token;
    expect(decode(token)).toMatchObject({ iss: idp.issuer, sub: 'thermostat-8', aud: 'urn:fleetgate', client_id: 'thermostat-app' });
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${token}`);
    const device = await mqttConnect(gw.gateway.mqttPort!, { username: 'thermostat-8', password: token });
    device.publish(fleet.topic, pack('mqtt-js'));
    expect(nameOf(await ws.next())).toBe('mqtt-js');
    device.end(true);
    const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.gateway.mqttPort), '-u', 'thermostat-8', '-P', token, '-t', fleet.topic, '-m', pack('mosquitto')]);
    expect(pub.code, pub.stderr).toBe(0);
    expect(nameOf(await ws.next())).toBe('mosquitto');
    expect((await publishAs(token, fleet.topic)).status).toBe(202);
    expect(nameOf(await ws.next())).toBe('some-base-name:current');
    ws.close();
  });

  it('is refused with a token for another audience, e.g. its id_token: 401, upgrade 401, CONNACK 4 / 0x86', async () => {
    const idToken = (await deviceSignIn('thermostat-8')).tokens.id_token!;
    // Same provider, same keys, a subject with a client: only the audience is wrong.
    expect(decode(idToken)).toMatchObject({ iss: idp.issuer, sub: 'thermostat-8', aud: 'thermostat-app' });
    const refusal = { code: 'FG_ERR_AUTHN_INVALID', message: 'unexpected audience' };
    expect(await publishAs(idToken, fleet.topic)).toMatchObject({ status: 401, json: refusal });
    await expect(WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${idToken}`)).rejects.toMatchObject({ status: 401, body: refusal });
    await expect(mqttConnect(gw.gateway.mqttPort!, { username: 'thermostat-8', password: idToken })).rejects.toMatchObject({ code: 4 });
    await expect(mqttConnect(gw.gateway.mqttPort!, { username: 'thermostat-8', password: idToken, protocolVersion: 5 })).rejects.toMatchObject({ code: 0x86 });
  });

  it('is disconnected at its token\'s exp (MQTT 5 DISCONNECT and WS close with FG_ERR_AUTHN_EXPIRED), then refreshes and reconnects', async () => {
    idp.setAccessTokenTtl(3);
    const session = await deviceSignIn('thermostat-8').finally(() => idp.setAccessTokenTtl(undefined));
    const token = session.tokens.access_token;
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${token}`);
    const device = await mqttConnect(gw.gateway.mqttPort!, { username: 'thermostat-8', password: token, protocolVersion: 5 });
    const told = new Promise<mqtt.IDisconnectPacket>((resolve) => device.once('disconnect', resolve));
    const [packet, wsClose] = await Promise.all([told, ws.closed]);
    expect(Date.now()).toBeGreaterThanOrEqual(decode(token).exp * 1000);
    expect(packet).toMatchObject({ reasonCode: 0x87, properties: { reasonString: 'FG_ERR_AUTHN_EXPIRED: token expired' } });
    expect(wsClose).toEqual({ code: 1008, reason: 'FG_ERR_AUTHN_EXPIRED: token expired' });
    device.end(true);
    // The expired token opens nothing any more; the refreshed one does.
    await expect(mqttConnect(gw.gateway.mqttPort!, { username: 'thermostat-8', password: token })).rejects.toMatchObject({ code: 4 });
    const fresh = (await session.refresh()).access_token;
    const watcher = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${fresh}`);
    const again = await mqttConnect(gw.gateway.mqttPort!, { username: 'thermostat-8', password: fresh });
    again.publish(fleet.topic, pack('after-refresh'));
    expect(nameOf(await watcher.next())).toBe('after-refresh');
    again.end(true);
    watcher.close();
  });
});

describe('key rotation at the identity provider', () => {
  it('keeps devices connected: those with old-key and new-key tokens both keep publishing', async () => {
    const oldToken = await idp.token('sensor-42');
    const ws = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${oldToken}`);
    const oldKey = await mqttConnect(gw.gateway.mqttPort!, { username: 'sensor-42', password: oldToken, clientId: 'old-key' });
    idp.rotate();
    const newToken = await idp.token('sensor-42');
    expect(kidOf(newToken)).not.toBe(kidOf(oldToken));
    // An unknown kid: the gateway refetches the provider's keys.
    const newKey = await mqttConnect(gw.gateway.mqttPort!, { username: 'sensor-42', password: newToken, clientId: 'new-key' });
    for (const [device, name] of [[oldKey, 'old-key'], [newKey, 'new-key'], [oldKey, 'old-key-again']] as const) {
      device.publish(fleet.topic, pack(name));
      expect(nameOf(await ws.next())).toBe(name);
    }
    oldKey.end(true);
    newKey.end(true);
    ws.close();
  });

  it('forgets verified tokens when the keys change: a retired key\'s tokens are refused at once, not when their cache entry ends', async () => {
    const token = await idp.token('sensor-42');
    expect((await publishAs(token, fleet.topic)).status).toBe(202);
    idp.rotate();
    idp.retire(kidOf(token));
    expect((await publishAs(await idp.token('sensor-42'), fleet.topic)).status).toBe(202);
    expect((await publishAs(token, fleet.topic)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID' });
  });
});

describe('channel rights from the token\'s roles (FLEETGATE_OIDC_ROLES_CLAIM, FLEETGATE_OIDC_ROLE_ACL)', () => {
  it('grants each role its rules (%u: the subject, or the MQTT username); a token without a listed role needs a client', async () => {
    const roles = await startGateway({
      oidcIssuer: idp.issuer, oidcAudience: 'urn:fleetgate', oidcRolesClaim: 'realm_access.roles',
      oidcRoleAcl: JSON.stringify({ sensor: [{ permission: 'allow', action: 'publish', topic: 'm/plant/c/telemetry/%u/#' }], viewer: { sub: ['m/plant/c/telemetry/#'] } }),
    });
    try {
      await provisionFleet(roles.gateway, { route: 'plant', channelRoute: 'telemetry' });
      const [sensor, viewer, none] = await Promise.all(['role-sensor', 'role-viewer', 'role-none'].map((id) => idp.token(id)));
      const watch = await WsClient.connect(`${roles.ws}/ws/m/plant/c/telemetry/%23?authorization=${viewer}`);
      expect((await publishAs(sensor!, 'm/plant/c/telemetry/role-sensor/temp', roles.http)).status).toBe(202);
      expect(nameOf(await watch.next())).toBe('some-base-name:current');
      expect((await publishAs(sensor!, 'm/plant/c/telemetry/someone-else', roles.http)).json).toMatchObject({ code: 'FG_ERR_AUTHZ_FORBIDDEN' });
      await expect(WsClient.connect(`${roles.ws}/ws/m/plant/c/telemetry/%23?authorization=${sensor}`)).rejects.toMatchObject({ status: 403 });
      expect((await publishAs(viewer!, 'm/plant/c/telemetry/role-viewer', roles.http)).status).toBe(403);
      const device = await mqttConnect(roles.gateway.mqttPort!, { username: 'unit-1', password: sensor });
      device.publish('m/plant/c/telemetry/unit-1/temp', pack('by-role'));
      expect(nameOf(await watch.next())).toBe('by-role');
      device.end(true);
      watch.close();
      expect((await publishAs(none!, 'm/plant/c/telemetry/role-none', roles.http)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'no client is provisioned for this token subject' });
    } finally {
      await roles.close();
    }
  });
});

describe('auto-provisioning (FLEETGATE_OIDC_AUTO_PROVISION)', () => {
  it('is off by default: a subject without a client is refused, and no client is made', async () => {
    expect((await publishAs(await idp.token('newcomer'), fleet.topic)).json).toMatchObject({ code: 'FG_ERR_AUTHN_INVALID', message: 'no client is provisioned for this token subject' });
    expect((await gw.gateway.provisioning.listClients(fleet.domain.id)).map((c) => c.externalId)).not.toContain('newcomer');
  });

  it('on: first connects of a subject on two instances make one client, with no connections until an admin adds them', async () => {
    const options = { oidcIssuer: idp.issuer, oidcAudience: 'urn:fleetgate', oidcAutoProvision: 'true', oidcAutoProvisionDomain: 'plant' };
    const one = await startGateway(options);
    let two: TestGateway | undefined;
    try {
      const f = await provisionFleet(one.gateway, { route: 'plant', channelRoute: 'telemetry' });
      // A second instance on the same store that does not poll it: it learns of the first one's client only when its
      // own attempt to create it clashes, as in a race between instances.
      two = await startGateway({ ...options, store: one.config.store, storePollInterval: 3_600_000 });
      const [a, b, c] = await Promise.all([1, 2, 3].map(() => idp.token('newcomer')));
      const first = await mqttConnect(one.gateway.mqttPort!, { username: 'newcomer', password: a });
      const second = await mqttConnect(two.gateway.mqttPort!, { username: 'newcomer', password: b });
      const made = (await one.gateway.provisioning.listClients('plant')).filter((client) => client.externalId === 'newcomer');
      expect(made).toMatchObject([{ name: 'newcomer', status: 'enabled' }]);
      // Known now, but allowed nowhere yet.
      expect(await publishAs(c!, f.topic, one.http)).toMatchObject({ status: 403, json: { code: 'FG_ERR_AUTHZ_FORBIDDEN' } });
      await one.gateway.provisioning.connect('plant', { client_ids: [made[0]!.id], channel_ids: [f.channel.id], types: ['publish'] });
      expect((await publishAs(c!, f.topic, one.http)).status).toBe(202);
      first.end(true);
      second.end(true);
    } finally {
      await two?.close();
      await one.close();
    }
  });
});

describe('examples/device-flow.ts', () => {
  it('shows the code, gets the token once approved, publishes SenML over MQTT, and refreshes and reconnects before exp', { timeout: 60_000 }, async () => {
    await deviceClient('thermostat-9');
    const watcher = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${await idp.token('sensor-42')}`);
    idp.setAccessTokenTtl(3);
    const script = spawn(process.execPath, ['--import', 'tsx', 'examples/device-flow.ts'], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      env: {
        ...process.env, OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: 'thermostat-app', OIDC_AUDIENCE: 'urn:fleetgate',
        FLEETGATE_MQTT_URL: `mqtt://127.0.0.1:${gw.gateway.mqttPort}`, FLEETGATE_TOPIC: fleet.topic, PUBLISH_INTERVAL: '1',
      },
    });
    let stderr = '';
    script.stderr.on('data', (d) => (stderr += d));
    const output: string[] = [];
    const lines = createInterface({ input: script.stdout });
    lines.on('line', (line) => output.push(line));
    /** Index of the first line at or after `from` that matches, once it is printed. */
    const printed = (pattern: RegExp, from = 0) => new Promise<number>((resolve, reject) => {
      const check = (): void => {
        const at = output.findIndex((line, i) => i >= from && pattern.test(line));
        if (at >= 0) resolve(at);
      };
      lines.on('line', check);
      script.once('exit', () => reject(new Error(`device-flow.ts exited: ${stderr}\n${output.join('\n')}`)));
      check();
    });
    try {
      const [, uri, code] = /^Open (\S+) and enter the code (\S+)$/.exec(output[await printed(/^Open /)]!)!;
      await idp.approveDevice(uri!, 'thermostat-9', code);
      const connected = await printed(/^connected to mqtt:\/\/127\.0\.0\.1:\d+ as thermostat-9$/);
      expect(JSON.parse((await watcher.next()).toString())[0]).toMatchObject({ n: 'thermostat:temperature', u: 'Cel' });
      const renewing = await printed(/^token about to expire: refreshing the token$/, connected);
      const reconnected = await printed(/^connected to /, renewing);
      await printed(/^published to /, reconnected);
      expect(output.filter((line) => /refused|MQTT:/.test(line))).toEqual([]);
    } finally {
      idp.setAccessTokenTtl(undefined);
      script.kill();
      watcher.close();
    }
  });
});
