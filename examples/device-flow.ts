/**
 * A headless device that signs in with the OAuth 2.0 device authorization grant (RFC 8628) at an identity provider and
 * publishes SenML to fleetgate over MQTT with the provider's token as its password (README: "Devices with tokens from
 * an identity provider").
 *
 *   OIDC_ISSUER=https://idp.example.com/realms/iot OIDC_CLIENT_ID=thermostat \
 *   FLEETGATE_MQTT_URL=mqtt://gateway.example.com:1883 FLEETGATE_TOPIC=m/plant/c/telemetry \
 *   node --import tsx examples/device-flow.ts
 *
 * Other settings: OIDC_CLIENT_SECRET (Google's device clients have one), OIDC_SCOPE (default `openid offline_access`:
 * offline_access brings the refresh token), OIDC_AUDIENCE (sent as the RFC 8707 `resource`; Keycloak sets the audience
 * with a mapper instead), OIDC_USE_ID_TOKEN=true (Google, whose access tokens are opaque), OIDC_SUBJECT_CLAIM (the claim
 * sent as MQTT username, as the gateway's FLEETGATE_OIDC_SUBJECT_CLAIM; default `sub`), PUBLISH_INTERVAL (seconds,
 * default 10).
 */
import mqtt from 'mqtt';
import * as oidc from 'openid-client';
import { renderUnicodeCompact } from 'uqr';

function setting(name: string, fallback?: string): string {
  const value = process.env[name] || fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

const issuer = new URL(setting('OIDC_ISSUER'));
const secret = process.env.OIDC_CLIENT_SECRET;
const mqttUrl = setting('FLEETGATE_MQTT_URL');
const topic = setting('FLEETGATE_TOPIC');
const interval = Number(setting('PUBLISH_INTERVAL', '10')) * 1000;
const resource: Record<string, string> = process.env.OIDC_AUDIENCE ? { resource: process.env.OIDC_AUDIENCE } : {};

const provider = await oidc.discovery(
  issuer, setting('OIDC_CLIENT_ID'), undefined, secret ? oidc.ClientSecretPost(secret) : oidc.None(),
  // A provider on plain http (a laptop, a test) must be allowed explicitly.
  issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : undefined,
);

// The person's half happens on a phone or laptop: show where to go, as text and as a QR code.
const codes = await oidc.initiateDeviceAuthorization(provider, { scope: setting('OIDC_SCOPE', 'openid offline_access'), ...resource });
console.log(`Open ${codes.verification_uri} and enter the code ${codes.user_code}`);
console.log(renderUnicodeCompact(codes.verification_uri_complete ?? codes.verification_uri));
let tokens = await oidc.pollDeviceAuthorizationGrant(provider, codes);
let refreshToken = tokens.refresh_token;

const bearer = (): string => (process.env.OIDC_USE_ID_TOKEN === 'true' ? tokens.id_token! : tokens.access_token);
const claimsOf = (jwt: string): Record<string, unknown> & { exp: number } => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());

/**
 * One MQTT connection with the current token, publishing every `interval`. Ends a little before the token expires (a
 * fifth of its lifetime, at most 30 s) or when the gateway closes it (at the token's exp: FG_ERR_AUTHN_EXPIRED);
 * resolves whether it ever got connected.
 */
function connection(): Promise<boolean> {
  const token = bearer();
  const claims = claimsOf(token);
  const subject = String(claims[setting('OIDC_SUBJECT_CLAIM', 'sub')]);
  const lifetime = claims.exp * 1000 - Date.now();
  // The username is the token's subject: `%u` in the gateway's rules, and FLEETGATE_OIDC_MATCH_USERNAME_TO_SUBJECT.
  const client = mqtt.connect(mqttUrl, { protocolVersion: 5, username: subject, password: token, reconnectPeriod: 0 });
  let connected = false;
  const publish = (): void => {
    const pack = [{ bn: 'thermostat:', n: 'temperature', u: 'Cel', v: Math.round(200 + Math.random() * 50) / 10 }];
    client.publish(topic, JSON.stringify(pack), { qos: 1 }, (err) => console.log(err ? `publish refused: ${err.message}` : `published to ${topic}`));
  };
  return new Promise((resolve) => {
    const publisher = setInterval(publish, interval);
    const done = (why: string): void => {
      clearInterval(publisher);
      clearTimeout(renewal);
      client.removeAllListeners('close');
      client.end(true);
      console.log(`${why}: refreshing the token`);
      resolve(connected);
    };
    const renewal = setTimeout(() => done('token about to expire'), lifetime - Math.min(30_000, lifetime / 5));
    client.on('connect', () => {
      connected = true;
      console.log(`connected to ${mqttUrl} as ${subject}`);
      publish();
    });
    // MQTT 5: the gateway says why it closes the connection.
    client.on('disconnect', (packet) => done(packet.properties?.reasonString ?? 'disconnected'));
    client.on('error', (err) => console.log(`MQTT: ${err.message}`));
    client.on('close', () => done('connection closed'));
  });
}

// fleetgate checks a token at CONNECT only: each new token needs a new connection.
for (;;) {
  // Refused or unreachable: wait before trying again, so as not to hammer the provider or the gateway.
  if (!(await connection())) await new Promise((resolve) => setTimeout(resolve, 5000));
  // A refresh token that is no longer valid throws here: the device must be signed in again.
  tokens = await oidc.refreshTokenGrant(provider, refreshToken!, resource);
  refreshToken = tokens.refresh_token ?? refreshToken;
}
