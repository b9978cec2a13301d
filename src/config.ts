import { isIP } from 'node:net';
import { z } from 'zod';
import { parseRoleAcl } from './auth/acl.ts';
import { parseKek } from './auth/key-encryption.ts';
import { GatewayError } from './errors.ts';

/**
 * Every setting in one table: its env variable, its default (as a user would write it), what it means, and a zod
 * schema that turns the string into the typed value. Flags are derived from the key (`httpPort` -> `--http-port`).
 * docs/CONFIG.md is generated from this table (`npm run docs:config`); test/unit/config-doc.test.ts checks that it is.
 */
const port = z.union([
  z.literal('off').transform(() => null),
  z.coerce.number().int().min(0).max(65535),
]);
const bytes = z.coerce.number().int().min(1);
const millis = z.coerce.number().int().min(0);
const flag = z.enum(['true', 'false']).transform((v) => v === 'true');
const isCidr = (v: string): boolean => {
  const [address, bits, extra] = v.split('/');
  const family = isIP(address ?? '');
  return family !== 0 && extra === undefined && (bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)));
};
const optionalUrl = z.union([z.literal(''), z.url()]);

export const kSettings = {
  host: {
    env: 'FLEETGATE_HOST', default: '0.0.0.0', doc: 'address every listener binds to',
    schema: z.string().min(1),
  },
  httpPort: {
    env: 'FLEETGATE_HTTP_PORT', default: '8080', doc: 'HTTP + WebSocket listener port (`off` disables it; `0` picks a free port)',
    schema: port,
  },
  mqttPort: {
    env: 'FLEETGATE_MQTT_PORT', default: '1883', doc: 'MQTT 3.1.1 and 5 listener port (`off` disables it; `0` picks a free port)',
    schema: port,
  },
  mqttMaxPacketSize: {
    env: 'FLEETGATE_MQTT_MAX_PACKET_SIZE', default: '0', doc: 'largest MQTT packet in bytes, checked from its header before it is read; 0: FLEETGATE_MAX_PAYLOAD + 64 KiB',
    schema: z.coerce.number().int().min(0),
  },
  mqttMaxTopicLevels: {
    env: 'FLEETGATE_MQTT_MAX_TOPIC_LEVELS', default: '16', doc: 'most levels in an MQTT topic or filter (m/D/c/C takes 4)',
    schema: z.coerce.number().int().min(5).max(100),
  },
  mqttConnectTimeout: {
    env: 'FLEETGATE_MQTT_CONNECT_TIMEOUT', default: '10000', doc: 'ms a new MQTT connection has to send CONNECT',
    schema: z.coerce.number().int().min(100),
  },
  mqttKeepaliveLimit: {
    env: 'FLEETGATE_MQTT_KEEPALIVE_LIMIT', default: '0', doc: 'largest keepalive (s) a client may ask for (MQTT 3.1.1: CONNACK 2 above it, or for 0; MQTT 5: told in CONNACK); 0: any',
    schema: z.coerce.number().int().min(0).max(65535),
  },
  mqttMaxInflight: {
    env: 'FLEETGATE_MQTT_MAX_INFLIGHT', default: '20', doc: 'QoS 1 and 2 deliveries a subscriber may leave unacknowledged; more wait for its PUBACKs (MQTT 5: at most its Receive Maximum too). Also the Receive Maximum told to MQTT 5 clients: more unreleased QoS 2 PUBLISHes get DISCONNECT 0x93. Mosquitto\'s `max_inflight_messages`, same default; 0: no limit',
    schema: z.coerce.number().int().min(0).max(65535),
  },
  mqttQueueLimit: {
    env: 'FLEETGATE_MQTT_QUEUE_LIMIT', default: '42', doc: 'packets a client may send before its CONNECT is answered; more closes the connection',
    schema: z.coerce.number().int().min(1),
  },
  mqttDrainTimeout: {
    env: 'FLEETGATE_MQTT_DRAIN_TIMEOUT', default: '10000', doc: 'ms an MQTT subscriber may stay unable to take more before it is disconnected',
    schema: z.coerce.number().int().min(0),
  },
  mqttPersistence: {
    env: 'FLEETGATE_MQTT_PERSISTENCE', default: 'sqlite', doc: 'where MQTT state (retained messages, persistent sessions, their subscriptions and queued QoS 1/2 messages) is kept: `sqlite` (`mqtt.db` beside a SQLite FLEETGATE_STORE; with `sqlite::memory:` or PostgreSQL `./data/mqtt.db`), `sqlite:<path>`, `memory` (lost at restart) or `redis://host:6379` (shared by instances). See docs/MQTT.md "Persistence"',
    schema: z.string().regex(/^(sqlite|sqlite:.+|memory|rediss?:\/\/.+)$/, 'must be sqlite, sqlite:<path>, memory or redis://host:port'),
  },
  mqttMaxQueued: {
    env: 'FLEETGATE_MQTT_MAX_QUEUED', default: '1000', doc: 'QoS 1/2 messages kept for one persistent session (in flight and queued), and waiting for an online client\'s in-flight window; beyond it the oldest is dropped and counted (Mosquitto `max_queued_messages`); 0: no limit',
    schema: z.coerce.number().int().min(0),
  },
  mqttSessionExpiryMax: {
    env: 'FLEETGATE_MQTT_SESSION_EXPIRY_MAX', default: '7200', doc: 'seconds a persistent session outlives its connection: the lifetime of MQTT 3.1.1 clean-session=false sessions (Mosquitto `persistent_client_expiration`) and the most an MQTT 5 Session Expiry Interval may ask (told in CONNACK); kept across restarts; 0: no limit',
    schema: z.coerce.number().int().min(0),
  },
  httpsPort: {
    env: 'FLEETGATE_HTTPS_PORT', default: '8443', doc: 'HTTPS + WSS listener port, started when FLEETGATE_TLS_CERT is set (`off` disables it)',
    schema: port,
  },
  mqttsPort: {
    env: 'FLEETGATE_MQTTS_PORT', default: '8883', doc: 'MQTT over TLS listener port, started when FLEETGATE_TLS_CERT is set (`off` disables it)',
    schema: port,
  },
  plain: {
    env: 'FLEETGATE_PLAIN', default: 'on', doc: '`off`: no plain HTTP and MQTT listeners, only TLS ones (x509-only deployments)',
    schema: z.enum(['on', 'off']).transform((v) => v === 'on'),
  },
  tlsCert: {
    env: 'FLEETGATE_TLS_CERT', default: '', doc: 'server certificate (PEM file, chain after it); enables the TLS listeners',
    schema: z.string(),
  },
  tlsKey: {
    env: 'FLEETGATE_TLS_KEY', default: '', doc: 'its private key (PEM file); never logged',
    schema: z.string(),
  },
  tlsClientCa: {
    env: 'FLEETGATE_TLS_CLIENT_CA', default: '', doc: 'CA certificate(s) client certificates must chain to (PEM file); enables mutual TLS',
    schema: z.string(),
  },
  tlsClientAuth: {
    env: 'FLEETGATE_TLS_CLIENT_AUTH', default: 'optional', doc: 'with a client CA: `required` (no valid certificate, no handshake) or `optional` (without a certificate, secret/JWT auth)',
    schema: z.enum(['optional', 'required']),
  },
  tlsClientCrl: {
    env: 'FLEETGATE_TLS_CLIENT_CRL', default: '', doc: 'revocation lists (PEM files, comma-separated; one file may hold several CRLs): a revoked client certificate is refused',
    schema: z.string().transform((v) => v.split(',').map((f) => f.trim()).filter((f) => f !== '')),
  },
  tlsClientDepth: {
    env: 'FLEETGATE_TLS_CLIENT_DEPTH', default: '1', doc: 'CA certificates allowed above a client certificate, the client CA included: 1 = issued by the client CA itself; raise it for intermediate CAs',
    schema: z.coerce.number().int().min(1).max(10),
  },
  tlsTerminator: {
    env: 'FLEETGATE_TLS_TERMINATOR', default: 'uws', doc: 'who terminates HTTPS/WSS without a client CA: `uws` (fastest; a new server certificate needs a restart) or `node` (reloads on SIGHUP; costs ~1.5× CPU per request, ~4× per handshake). With a client CA it is always `node`',
    schema: z.enum(['uws', 'node']),
  },
  tlsIdentity: {
    env: 'FLEETGATE_TLS_IDENTITY', default: 'secret', doc: 'what a client certificate\'s CN is: the client\'s `secret` (Magistrala) or its `client_id`',
    schema: z.enum(['secret', 'client_id']),
  },
  store: {
    env: 'FLEETGATE_STORE', default: 'sqlite:./data/fleetgate.db', doc: 'registry store URL: `sqlite:<path>`, `sqlite::memory:`, or `postgres://user:pass@host:5432/db` (shared by several instances)',
    schema: z.string().regex(/^(sqlite:.+|postgres(ql)?:\/\/.+)/, 'must be sqlite:<path>, sqlite::memory: or postgres://user:pass@host:port/db'),
  },
  trustedProxies: {
    env: 'FLEETGATE_TRUSTED_PROXIES', default: '', doc: 'load balancers (comma-separated addresses or CIDRs, e.g. `10.0.0.0/8`) whose PROXY protocol v2 header names the device\'s real address; a PROXY header from anyone else is refused',
    schema: z.string().transform((v) => v.split(',').map((c) => c.trim()).filter((c) => c !== '')).pipe(z.array(z.string().refine(isCidr, 'must be comma-separated IP addresses or CIDRs'))),
  },
  bus: {
    env: 'FLEETGATE_BUS', default: 'local', doc: 'how instances share messages: `local` (one instance) or `nats://host:4222[,nats://host2:4222]` (every instance on the same NATS)',
    schema: z.union([z.literal('local'), z.string().regex(/^nats:\/\/[^\s,]+(,\s*nats:\/\/[^\s,]+)*$/, 'must be local or nats://host:port[,nats://host:port...]')]),
  },
  busConnectWait: {
    env: 'FLEETGATE_BUS_CONNECT_WAIT', default: '5000', doc: 'ms the start waits for the bus; after it the gateway serves anyway (not ready) and keeps trying',
    schema: millis,
  },
  storePollInterval: {
    env: 'FLEETGATE_STORE_POLL_INTERVAL', default: '250', doc: 'ms between checks for registry changes made by other processes (the CLI, other instances); with PostgreSQL changes arrive by LISTEN/NOTIFY and this is only the safety net',
    schema: z.coerce.number().int().min(10),
  },
  storeBusyTimeout: {
    env: 'FLEETGATE_STORE_BUSY_TIMEOUT', default: '2000', doc: 'ms a registry write waits while another process (the CLI, a maintenance job) holds the store locked, retrying without blocking traffic; then 503 FG_ERR_STORE_UNAVAILABLE',
    schema: millis,
  },
  adminEmail: {
    env: 'FLEETGATE_ADMIN_EMAIL', default: '', doc: 'email of the admin user created (or updated) at start; empty: no admin, provisioning API refuses all',
    schema: z.union([z.literal(''), z.email()]),
  },
  adminPassword: {
    env: 'FLEETGATE_ADMIN_PASSWORD', default: '', doc: 'password of that admin (at least 8 characters); never logged',
    schema: z.union([z.literal(''), z.string().min(8, 'must be at least 8 characters')]),
  },
  maxPayload: {
    env: 'FLEETGATE_MAX_PAYLOAD', default: '1048576', doc: 'largest message body in bytes (HTTP body, WebSocket message); checked while streaming',
    schema: bytes,
  },
  corsOrigins: {
    env: 'FLEETGATE_CORS_ORIGINS', default: '', doc: 'browser origins allowed to call the REST API and HTTP publish (comma-separated, exact, e.g. `https://app.example.com`); listed origins may send credentials (Authorization, the session cookie); `*` lets any origin call without credentials; empty: none (docs/HTTP.md)',
    schema: z.string().transform((v) => v.split(',').map((o) => o.trim()).filter((o) => o !== '')).pipe(z.array(z.string().refine(
      (o) => o === '*' || (URL.canParse(o) && new URL(o).origin === o),
      'each entry must be `*` or an origin such as https://app.example.com (scheme, host, optional port; no path or trailing slash)',
    ))),
  },
  wsMaxBackpressure: {
    env: 'FLEETGATE_WS_MAX_BACKPRESSURE', default: '1048576', doc: 'bytes a WebSocket subscriber may have queued before it is dropped (close 1013)',
    schema: bytes,
  },
  wsIdleTimeout: {
    env: 'FLEETGATE_WS_IDLE_TIMEOUT', default: '120', doc: 'seconds of silence before a WebSocket is closed (pings are sent automatically); 0 disables',
    schema: z.coerce.number().int().refine((s) => s === 0 || (s >= 8 && s % 4 === 0), 'must be 0, or a multiple of 4 that is at least 8'),
  },
  shutdownTimeout: {
    env: 'FLEETGATE_SHUTDOWN_TIMEOUT', default: '10000', doc: 'ms that SIGTERM waits for in-flight requests before closing anyway',
    schema: millis,
  },
  authWorkers: {
    env: 'FLEETGATE_AUTH_WORKERS', default: '0', doc: 'auth worker threads (token verification, signing); 0: one per CPU core',
    schema: z.coerce.number().int().min(0).max(64),
  },
  authQueueLimit: {
    env: 'FLEETGATE_AUTH_QUEUE_LIMIT', default: '4096', doc: 'token verifications allowed to wait for a worker; beyond it: 503 / 1013 (FG_ERR_AUTHN_BUSY)',
    schema: z.coerce.number().int().min(1),
  },
  authCacheSize: {
    env: 'FLEETGATE_AUTH_CACHE_SIZE', default: '100000', doc: 'verified tokens kept in the auth cache (LRU)',
    schema: z.coerce.number().int().min(1),
  },
  authCacheTtl: {
    env: 'FLEETGATE_AUTH_CACHE_TTL', default: '300', doc: 'seconds a verified token stays cached (never past its exp; revocation evicts at once)',
    schema: z.coerce.number().int().min(1),
  },
  authNegativeTtl: {
    env: 'FLEETGATE_AUTH_NEGATIVE_TTL', default: '5', doc: 'seconds a refused token is refused from the cache without a new verification',
    schema: z.coerce.number().int().min(0),
  },
  authHashWorkers: {
    env: 'FLEETGATE_AUTH_HASH_WORKERS', default: '1', doc: 'password hashing threads (scrypt), a pool of their own so that logins never delay token checks',
    schema: z.coerce.number().int().min(1).max(64),
  },
  authHashQueueLimit: {
    env: 'FLEETGATE_AUTH_HASH_QUEUE_LIMIT', default: '32', doc: 'password checks allowed to wait for a hashing thread; beyond it: 503 (FG_ERR_AUTHN_BUSY)',
    schema: z.coerce.number().int().min(0),
  },
  authLimit: {
    env: 'FLEETGATE_AUTH_LIMIT', default: 'true', doc: 'limit repeated password and secret failures per address and per account+address (docs/RATE-LIMITS.md); `false`: off',
    schema: flag,
  },
  authLimitWindow: {
    env: 'FLEETGATE_AUTH_LIMIT_WINDOW', default: '300', doc: 'seconds over which authentication failures are counted',
    schema: z.coerce.number().int().min(1),
  },
  authLimitAccountFailures: {
    env: 'FLEETGATE_AUTH_LIMIT_ACCOUNT_FAILURES', default: '5', doc: 'failures of one account (client id, user login) from one address, within the window, that block that pair',
    schema: z.coerce.number().int().min(1),
  },
  authLimitAddressFailures: {
    env: 'FLEETGATE_AUTH_LIMIT_ADDRESS_FAILURES', default: '30', doc: 'failures from one address (any account), within the window, that block the address',
    schema: z.coerce.number().int().min(1),
  },
  authLimitBackoff: {
    env: 'FLEETGATE_AUTH_LIMIT_BACKOFF', default: '30', doc: 'seconds of the first block; each block that follows within a window of the last one lasts twice as long',
    schema: z.coerce.number().int().min(1),
  },
  authLimitMaxBackoff: {
    env: 'FLEETGATE_AUTH_LIMIT_MAX_BACKOFF', default: '900', doc: 'longest block, in seconds',
    schema: z.coerce.number().int().min(1),
  },
  authLimitEntries: {
    env: 'FLEETGATE_AUTH_LIMIT_ENTRIES', default: '100000', doc: 'addresses and account+address pairs remembered by the failure limits (each table, LRU)',
    schema: z.coerce.number().int().min(1),
  },
  jwtAlgorithm: {
    env: 'FLEETGATE_JWT_ALGORITHM', default: 'EdDSA', doc: 'algorithm of fleetgate\'s own tokens: `EdDSA` (Ed25519), `ES256`, or `HS256`/`HS384`/`HS512` with FLEETGATE_JWT_SECRET',
    schema: z.enum(['EdDSA', 'ES256', 'HS256', 'HS384', 'HS512']),
  },
  jwtSecret: {
    env: 'FLEETGATE_JWT_SECRET', default: '', doc: 'HMAC secret for HS* (at least 32 characters); never logged',
    schema: z.string(),
  },
  jwtIssuer: {
    env: 'FLEETGATE_JWT_ISSUER', default: 'fleetgate.auth', doc: '`iss` of fleetgate\'s tokens',
    schema: z.string().min(1),
  },
  jwtAccessTtl: {
    env: 'FLEETGATE_JWT_ACCESS_TTL', default: '3600', doc: 'seconds an access token lives',
    schema: z.coerce.number().int().min(1),
  },
  jwtRefreshTtl: {
    env: 'FLEETGATE_JWT_REFRESH_TTL', default: '86400', doc: 'seconds a session (its refresh token) lives',
    schema: z.coerce.number().int().min(1),
  },
  jwtRecoveryTtl: {
    env: 'FLEETGATE_JWT_RECOVERY_TTL', default: '300', doc: 'seconds a password recovery token lives',
    schema: z.coerce.number().int().min(1),
  },
  jwtClockTolerance: {
    env: 'FLEETGATE_JWT_CLOCK_TOLERANCE', default: '5', doc: 'seconds of clock skew allowed on exp and nbf',
    schema: z.coerce.number().int().min(0).max(300),
  },
  keyEncryptionKey: {
    env: 'FLEETGATE_KEY_ENCRYPTION_KEY', default: '', doc: 'key-encryption key sealing the token signing keys in the store (AES-256-GCM): 32 bytes as base64 or hex; never logged; empty: FLEETGATE_KEY_ENCRYPTION_KEY_FILE',
    schema: z.string().refine((v) => v === '' || parseKek(v) !== undefined, 'must be 32 bytes as base64 or hex'),
  },
  keyEncryptionKeyFile: {
    env: 'FLEETGATE_KEY_ENCRYPTION_KEY_FILE', default: '', doc: 'file holding that key (32 bytes as base64 or hex); empty: `fleetgate.kek` beside the store, generated (0600) on first start. Back it up apart from the store: without it the signing keys are lost',
    schema: z.string(),
  },
  selfRegistration: {
    env: 'FLEETGATE_SELF_REGISTRATION', default: 'true', doc: '`true`: anyone may `POST /users`; `false`: only admins',
    schema: flag,
  },
  mailUrl: {
    env: 'FLEETGATE_MAIL_URL', default: 'file:./data/outbox', doc: 'where mail goes: `smtp://user:pass@host:587`, `smtps://...`, or `file:<dir>` (one file per mail, for development)',
    schema: z.string().regex(/^(smtps?:\/\/|file:).+/, 'must be smtp://, smtps:// or file:<dir>'),
  },
  mailFrom: {
    env: 'FLEETGATE_MAIL_FROM', default: 'fleetgate@localhost', doc: 'sender of password reset mail',
    schema: z.string().min(3),
  },
  passwordResetUrl: {
    env: 'FLEETGATE_PASSWORD_RESET_URL', default: '', doc: 'link mailed for a password reset; `?token=<recovery token>` is appended. Empty: this gateway\'s own reset form, `http://<FLEETGATE_HOST>:<HTTP port>/password/reset` (`localhost` for 0.0.0.0; HTTPS when plain HTTP is off)',
    schema: optionalUrl,
  },
  googleClientId: {
    env: 'FLEETGATE_GOOGLE_CLIENT_ID', aliases: ['SMQ_GOOGLE_CLIENT_ID', 'MG_GOOGLE_CLIENT_ID'], default: '', doc: 'sign-in with Google: the OAuth client id; with secret and redirect URL it enables `/oauth/authorize/google`',
    schema: z.string(),
  },
  googleClientSecret: {
    env: 'FLEETGATE_GOOGLE_CLIENT_SECRET', aliases: ['SMQ_GOOGLE_CLIENT_SECRET', 'MG_GOOGLE_CLIENT_SECRET'], default: '', doc: 'its client secret; never logged',
    schema: z.string(),
  },
  googleRedirectUrl: {
    env: 'FLEETGATE_GOOGLE_REDIRECT_URL', aliases: ['SMQ_GOOGLE_REDIRECT_URL', 'MG_GOOGLE_REDIRECT_URL'], default: '', doc: 'the redirect URL registered at Google: `https://<gateway>/oauth/callback/google`',
    schema: optionalUrl,
  },
  googleState: {
    env: 'FLEETGATE_GOOGLE_STATE', aliases: ['SMQ_GOOGLE_STATE', 'MG_GOOGLE_STATE'], default: '', doc: 'accepted for compatibility and not used: every sign-in gets its own random state',
    schema: z.string(),
  },
  googleIssuer: {
    env: 'FLEETGATE_GOOGLE_ISSUER', default: 'https://accounts.google.com', doc: 'Google\'s issuer (discovery); change it only to test against another provider',
    schema: z.url(),
  },
  oauthProvider: {
    env: 'FLEETGATE_OAUTH_PROVIDER', default: 'oidc', doc: 'name of the generic OpenID Connect sign-in provider in its routes: `/oauth/authorize/<name>`, `/oauth/callback/<name>`',
    schema: z.string().regex(/^[a-z0-9-]+$/, 'lower-case letters, digits and -').refine((v) => v !== 'google', 'google is the preset\'s name'),
  },
  oauthIssuer: {
    env: 'FLEETGATE_OAUTH_ISSUER', default: '', doc: 'sign-in with any OpenID Connect provider (Keycloak realm URL, Okta, Azure...): its issuer; with client id, secret and redirect URL it enables the routes',
    schema: optionalUrl,
  },
  oauthClientId: {
    env: 'FLEETGATE_OAUTH_CLIENT_ID', default: '', doc: 'its client id',
    schema: z.string(),
  },
  oauthClientSecret: {
    env: 'FLEETGATE_OAUTH_CLIENT_SECRET', default: '', doc: 'its client secret; never logged',
    schema: z.string(),
  },
  oauthRedirectUrl: {
    env: 'FLEETGATE_OAUTH_REDIRECT_URL', default: '', doc: 'the redirect URL registered there: `https://<gateway>/oauth/callback/<name>`',
    schema: optionalUrl,
  },
  oauthUiRedirectUrl: {
    env: 'FLEETGATE_OAUTH_UI_REDIRECT_URL', aliases: ['SMQ_OAUTH_UI_REDIRECT_URL', 'MG_OAUTH_UI_REDIRECT_URL'], default: 'http://localhost:9095/domains', doc: 'where a browser goes after signing in (302, with the session cookies)',
    schema: z.url(),
  },
  oauthUiErrorUrl: {
    env: 'FLEETGATE_OAUTH_UI_ERROR_URL', aliases: ['SMQ_OAUTH_UI_ERROR_URL', 'MG_OAUTH_UI_ERROR_URL'], default: 'http://localhost:9095/error', doc: 'where a failed sign-in goes (303, `?error=<message>` appended)',
    schema: z.url(),
  },
  oidcIssuer: {
    env: 'FLEETGATE_OIDC_ISSUER', default: '', doc: 'external identity provider (Keycloak, Google, ...): its issuer URL; its tokens are then accepted (`iss` must equal it)',
    schema: optionalUrl,
  },
  oidcJwksUrl: {
    env: 'FLEETGATE_OIDC_JWKS_URL', default: '', doc: 'the provider\'s JWKS URL; empty: found by discovery (`<issuer>/.well-known/openid-configuration`)',
    schema: optionalUrl,
  },
  oidcAudience: {
    env: 'FLEETGATE_OIDC_AUDIENCE', default: '', doc: '`aud` the provider\'s tokens must carry; empty: not checked',
    schema: z.string(),
  },
  oidcSubjectClaim: {
    env: 'FLEETGATE_OIDC_SUBJECT_CLAIM', default: 'sub', doc: 'claim naming the subject (a dotted path such as `a.b` reaches a nested claim); looked up as a client\'s `external_id`',
    schema: z.string().min(1),
  },
  oidcAclClaim: {
    env: 'FLEETGATE_OIDC_ACL_CLAIM', default: '', doc: 'claim carrying channel rights (EMQX-style rules, `%c`/`%u` placeholders; a dotted path reaches a nested claim); a token with it needs no provisioned client',
    schema: z.string(),
  },
  oidcMatchUsernameToSubject: {
    env: 'FLEETGATE_OIDC_MATCH_USERNAME_TO_SUBJECT', default: 'false', doc: 'MQTT: a connection with a provider token must use the token\'s subject as its username (Mosquitto JWT plugin semantics)',
    schema: flag,
  },
  oidcMatchClientIdToSubject: {
    env: 'FLEETGATE_OIDC_MATCH_CLIENT_ID_TO_SUBJECT', default: 'false', doc: 'MQTT: a connection with a provider token must use the token\'s subject as its client id',
    schema: flag,
  },
  oidcJwksCooldown: {
    env: 'FLEETGATE_OIDC_JWKS_COOLDOWN', default: '30', doc: 'seconds between two refetches of the provider\'s JWKS (done when a token names an unknown key)',
    schema: z.coerce.number().int().min(0),
  },
  oidcRolesClaim: {
    env: 'FLEETGATE_OIDC_ROLES_CLAIM', default: '', doc: 'claim listing a token\'s roles (an array, or a space-separated string), e.g. Keycloak\'s `realm_access.roles`; with FLEETGATE_OIDC_ROLE_ACL',
    schema: z.string(),
  },
  oidcRoleAcl: {
    env: 'FLEETGATE_OIDC_ROLE_ACL', default: '', doc: 'channel rights per role: JSON `{"<role>": [rules as in the ACL claim]}`; a token with a listed role needs no provisioned client',
    schema: z.string().transform((json, ctx) => {
      const table = parseRoleAcl(json);
      if (typeof table !== 'string') return table;
      ctx.addIssue({ code: 'custom', message: table });
      return z.NEVER;
    }),
  },
  oidcAutoProvision: {
    env: 'FLEETGATE_OIDC_AUTO_PROVISION', default: 'false', doc: '`true`: a token subject with no client (and no rights from claims or roles) gets one, without connections, in FLEETGATE_OIDC_AUTO_PROVISION_DOMAIN',
    schema: flag,
  },
  oidcAutoProvisionDomain: {
    env: 'FLEETGATE_OIDC_AUTO_PROVISION_DOMAIN', default: '', doc: 'id or route of the domain auto-provisioned clients go to',
    schema: z.string(),
  },
  logLevel: {
    env: 'FLEETGATE_LOG_LEVEL', default: 'info', doc: 'pino level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
  auditLog: {
    env: 'FLEETGATE_AUDIT_LOG', default: 'stdout', doc: 'audit events (authentication decisions, refusals, registry and key changes, rate limiting; see docs/OPERATIONS.md): `stdout` (JSON lines marked `"audit":true`, beside the log), a file path (appended, created 0600), or `off`',
    schema: z.string().min(1),
  },
} as const;

type Settings = typeof kSettings;
export type SettingKey = keyof Settings;
export type GatewayConfig = Readonly<{ [K in SettingKey]: z.output<Settings[K]['schema']> }>;
/** What a user may pass: any subset, as strings (env, flags) or already typed values (tests, embedding). */
export type GatewayOptions = Partial<{ [K in SettingKey]: string | z.output<Settings[K]['schema']> }>;

export function aliasesOf(setting: object): readonly string[] {
  return 'aliases' in setting ? (setting.aliases as readonly string[]) : [];
}

/** The first of a setting's aliases (the seed's SMQ_/MG_ names) set in the environment. */
function aliasValue(setting: object, env: NodeJS.ProcessEnv): string | undefined {
  for (const alias of aliasesOf(setting)) if (env[alias] !== undefined) return env[alias];
  return undefined;
}

/**
 * A sign-in provider's settings (`parts`, named by their variable after `prefix`) come all together or not at all, and
 * its redirect URL ends in its callback route.
 */
function signInProblems(name: string, prefix: string, parts: Record<string, unknown>, problems: string[]): void {
  const missing = Object.keys(parts).filter((part) => parts[part] === '').map((part) => `${prefix}_${part}`);
  if (missing.length === Object.keys(parts).length) return;
  if (missing.length > 0) problems.push(`sign-in with ${name} also needs ${missing.join(', ')}`);
  else if (new URL(parts.REDIRECT_URL as string).pathname !== `/oauth/callback/${name}`) problems.push(`${prefix}_REDIRECT_URL must end in /oauth/callback/${name}`);
}

export function flagOf(key: SettingKey): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/**
 * Builds the one frozen config: defaults, then `FLEETGATE_*` variables from `env`, then `options` (flags).
 * Throws FG_ERR_CONFIG_INVALID naming every bad setting at once.
 */
export function loadConfig(options: GatewayOptions = {}, env: NodeJS.ProcessEnv = {}): GatewayConfig {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const key of Object.keys(kSettings) as SettingKey[]) {
    const setting = kSettings[key];
    const raw = options[key] ?? env[setting.env] ?? aliasValue(setting, env) ?? setting.default;
    const parsed = setting.schema.safeParse(typeof raw === 'string' ? raw.trim() : raw);
    if (parsed.success) out[key] = parsed.data;
    else problems.push(`${setting.env} (${flagOf(key)}): ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  }
  if ((out.adminEmail === '') !== (out.adminPassword === '')) {
    problems.push('FLEETGATE_ADMIN_EMAIL and FLEETGATE_ADMIN_PASSWORD must be set together');
  }
  if (typeof out.jwtAlgorithm === 'string' && out.jwtAlgorithm.startsWith('HS') && (out.jwtSecret as string).length < 32) {
    problems.push('FLEETGATE_JWT_SECRET (--jwt-secret): must be at least 32 characters with an HS* algorithm');
  }
  if (out.keyEncryptionKey !== '' && out.keyEncryptionKeyFile !== '') problems.push('FLEETGATE_KEY_ENCRYPTION_KEY and FLEETGATE_KEY_ENCRYPTION_KEY_FILE: set one, not both');
  if (out.oidcIssuer === '' && out.oidcJwksUrl !== '') problems.push('FLEETGATE_OIDC_JWKS_URL needs FLEETGATE_OIDC_ISSUER (the `iss` to check)');
  const roleAcl = out.oidcRoleAcl as ReadonlyMap<string, unknown> | undefined;
  if (roleAcl !== undefined && (out.oidcRolesClaim === '') !== (roleAcl.size === 0)) problems.push('FLEETGATE_OIDC_ROLES_CLAIM and FLEETGATE_OIDC_ROLE_ACL must be set together');
  if (out.oidcAutoProvision === true && out.oidcAutoProvisionDomain === '') problems.push('FLEETGATE_OIDC_AUTO_PROVISION=true needs FLEETGATE_OIDC_AUTO_PROVISION_DOMAIN');
  if ((out.tlsCert === '') !== (out.tlsKey === '')) problems.push('FLEETGATE_TLS_CERT and FLEETGATE_TLS_KEY must be set together');
  if (out.tlsCert === '' && out.tlsClientCa !== '') problems.push('FLEETGATE_TLS_CLIENT_CA needs FLEETGATE_TLS_CERT and FLEETGATE_TLS_KEY');
  if (out.tlsClientCa === '' && (out.tlsClientCrl as string[]).length > 0) problems.push('FLEETGATE_TLS_CLIENT_CRL needs FLEETGATE_TLS_CLIENT_CA');
  if (out.plain === false && out.tlsCert === '') problems.push('FLEETGATE_PLAIN=off needs FLEETGATE_TLS_CERT: no listener would be left');
  signInProblems('google', 'FLEETGATE_GOOGLE', { CLIENT_ID: out.googleClientId, CLIENT_SECRET: out.googleClientSecret, REDIRECT_URL: out.googleRedirectUrl }, problems);
  signInProblems(String(out.oauthProvider), 'FLEETGATE_OAUTH', {
    ISSUER: out.oauthIssuer, CLIENT_ID: out.oauthClientId, CLIENT_SECRET: out.oauthClientSecret, REDIRECT_URL: out.oauthRedirectUrl,
  }, problems);
  if (problems.length > 0) {
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`, { problems });
  }
  return Object.freeze(out) as GatewayConfig;
}
