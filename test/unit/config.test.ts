import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kSettings, loadConfig } from '../../src/config.ts';
import { GatewayError } from '../../src/errors.ts';
import { kPermission } from '../../src/registry/types.ts';

function configError(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    return err as GatewayError;
  }
  throw new Error('expected a config error');
}

const refusal = (env: NodeJS.ProcessEnv) => configError(() => loadConfig({}, env)).message;

describe('config', () => {
  it('gives the documented defaults with nothing set', () => {
    expect(loadConfig()).toMatchObject({ host: '0.0.0.0', httpPort: 8080, store: 'sqlite:./data/fleetgate.db', maxPayload: 1048576, logLevel: 'info' });
  });

  it('reads FLEETGATE_* variables; options (flags) win over them', () => {
    const env = { FLEETGATE_HTTP_PORT: '9000', FLEETGATE_LOG_LEVEL: 'debug' };
    expect(loadConfig({}, env)).toMatchObject({ httpPort: 9000, logLevel: 'debug' });
    expect(loadConfig({ httpPort: '9001' }, env).httpPort).toBe(9001);
  });

  it('turns a listener off with "off", and freezes the result', () => {
    const config = loadConfig({}, { FLEETGATE_HTTP_PORT: 'off' });
    expect(config.httpPort).toBeNull();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('names every bad setting at once, with its variable and flag', () => {
    const err = configError(() => loadConfig({}, { FLEETGATE_HTTP_PORT: '70000', FLEETGATE_LOG_LEVEL: 'loud', FLEETGATE_WS_IDLE_TIMEOUT: '10' }));
    expect(err.code).toBe('FG_ERR_CONFIG_INVALID');
    expect(err.message).toContain('FLEETGATE_HTTP_PORT (--http-port)');
    expect(err.message).toContain('FLEETGATE_LOG_LEVEL (--log-level)');
    expect(err.message).toContain('FLEETGATE_WS_IDLE_TIMEOUT (--ws-idle-timeout): must be 0, or a multiple of 4');
  });

  it('refuses a bus, store or trusted-proxy list that cannot be used, by name', () => {
    const err = configError(() => loadConfig({}, {
      FLEETGATE_BUS: 'redis://127.0.0.1:6379', FLEETGATE_STORE: 'mysql://db/fleet', FLEETGATE_TRUSTED_PROXIES: '10.0.0.0/8, haproxy.local',
    }));
    expect(err.message).toContain('FLEETGATE_BUS (--bus): must be local or nats://host:port');
    expect(err.message).toContain('FLEETGATE_STORE (--store): must be sqlite:<path>, sqlite::memory: or postgres://');
    expect(err.message).toContain('FLEETGATE_TRUSTED_PROXIES (--trusted-proxies): must be comma-separated IP addresses or CIDRs');
    expect(configError(() => loadConfig({}, { FLEETGATE_TRUSTED_PROXIES: '10.0.0.0/33' })).message).toContain('FLEETGATE_TRUSTED_PROXIES');
    expect(loadConfig({}, { FLEETGATE_BUS: 'nats://a:4222,nats://b:4222', FLEETGATE_TRUSTED_PROXIES: '10.0.0.0/8,::1' })).toMatchObject({
      bus: 'nats://a:4222,nats://b:4222', trustedProxies: ['10.0.0.0/8', '::1'],
    });
  });

  it('wants the admin email and password together, and a password of 8 characters or more', () => {
    expect(configError(() => loadConfig({}, { FLEETGATE_ADMIN_EMAIL: 'a@example.com' })).message).toContain('must be set together');
    expect(configError(() => loadConfig({}, { FLEETGATE_ADMIN_EMAIL: 'a@example.com', FLEETGATE_ADMIN_PASSWORD: 'short' })).message).toContain('at least 8');
    expect(configError(() => loadConfig({}, { FLEETGATE_ADMIN_EMAIL: 'not-an-email', FLEETGATE_ADMIN_PASSWORD: 'long enough' })).message).toContain('FLEETGATE_ADMIN_EMAIL');
  });

  it('wants a 32-character secret for HS* tokens, and an issuer with a JWKS URL', () => {
    expect(configError(() => loadConfig({}, { FLEETGATE_JWT_ALGORITHM: 'HS256', FLEETGATE_JWT_SECRET: 'too short' })).message)
      .toContain('FLEETGATE_JWT_SECRET (--jwt-secret): must be at least 32 characters');
    expect(loadConfig({}, { FLEETGATE_JWT_ALGORITHM: 'HS256', FLEETGATE_JWT_SECRET: 'x'.repeat(32) }).jwtAlgorithm).toBe('HS256');
    expect(configError(() => loadConfig({}, { FLEETGATE_OIDC_JWKS_URL: 'https://idp.example/jwks' })).message).toContain('FLEETGATE_OIDC_JWKS_URL needs FLEETGATE_OIDC_ISSUER');
  });

  it('parses FLEETGATE_OIDC_ROLE_ACL at load, refusing a bad one by name; wants roles claim and table together, and a domain for auto-provisioning', () => {
    const roleAcl = (json: string) => ({ FLEETGATE_OIDC_ROLES_CLAIM: 'realm_access.roles', FLEETGATE_OIDC_ROLE_ACL: json });
    expect([...loadConfig({}, roleAcl('{"sensor": [{"permission": "allow", "action": "all", "topic": "m/plant/c/t/%u/#"}], "viewer": {"sub": ["#"]}}')).oidcRoleAcl])
      .toEqual([['sensor', [{ allow: true, mask: kPermission.publish | kPermission.subscribe, topic: 'm/plant/c/t/%u/#' }]], ['viewer', [{ allow: true, mask: kPermission.subscribe, topic: '#' }]]]);
    expect(refusal(roleAcl('{"sensor": '))).toContain('FLEETGATE_OIDC_ROLE_ACL (--oidc-role-acl): not JSON');
    expect(refusal(roleAcl('[]'))).toContain('FLEETGATE_OIDC_ROLE_ACL (--oidc-role-acl): must be a JSON object: role -> rules');
    expect(refusal(roleAcl('{"sensor": [{"action": "publsh", "topic": "#"}]}'))).toContain('FLEETGATE_OIDC_ROLE_ACL (--oidc-role-acl): rules of role "sensor" are malformed');
    expect(refusal({ FLEETGATE_OIDC_ROLE_ACL: '{"sensor": {"pub": ["#"]}}' })).toContain('FLEETGATE_OIDC_ROLES_CLAIM and FLEETGATE_OIDC_ROLE_ACL must be set together');
    expect(refusal({ FLEETGATE_OIDC_ROLES_CLAIM: 'roles' })).toContain('FLEETGATE_OIDC_ROLES_CLAIM and FLEETGATE_OIDC_ROLE_ACL must be set together');
    expect(loadConfig().oidcAutoProvision).toBe(false);
    expect(refusal({ FLEETGATE_OIDC_AUTO_PROVISION: 'true' })).toContain('FLEETGATE_OIDC_AUTO_PROVISION=true needs FLEETGATE_OIDC_AUTO_PROVISION_DOMAIN');
    expect(loadConfig({}, { FLEETGATE_OIDC_AUTO_PROVISION: 'true', FLEETGATE_OIDC_AUTO_PROVISION_DOMAIN: 'plant' }).oidcAutoProvision).toBe(true);
  });

  it('refuses TLS settings that cannot work together', () => {
    expect(refusal({ FLEETGATE_TLS_CERT: 'server.crt' })).toContain('FLEETGATE_TLS_CERT and FLEETGATE_TLS_KEY must be set together');
    expect(refusal({ FLEETGATE_TLS_CLIENT_CA: 'ca.crt' })).toContain('FLEETGATE_TLS_CLIENT_CA needs FLEETGATE_TLS_CERT and FLEETGATE_TLS_KEY');
    expect(refusal({ FLEETGATE_TLS_CERT: 'a', FLEETGATE_TLS_KEY: 'b', FLEETGATE_TLS_CLIENT_CRL: 'x.crl' })).toContain('FLEETGATE_TLS_CLIENT_CRL needs FLEETGATE_TLS_CLIENT_CA');
    expect(refusal({ FLEETGATE_PLAIN: 'off' })).toContain('FLEETGATE_PLAIN=off needs FLEETGATE_TLS_CERT');
    expect(refusal({ FLEETGATE_TLS_CLIENT_AUTH: 'sometimes', FLEETGATE_TLS_IDENTITY: 'cn' })).toMatch(/FLEETGATE_TLS_CLIENT_AUTH.*FLEETGATE_TLS_IDENTITY/);
    expect(refusal({ FLEETGATE_TLS_CLIENT_DEPTH: '0', FLEETGATE_TLS_TERMINATOR: 'nginx' })).toMatch(/FLEETGATE_TLS_CLIENT_DEPTH \(--tls-client-depth\).*FLEETGATE_TLS_TERMINATOR \(--tls-terminator\)/);
    expect(loadConfig({}, { FLEETGATE_TLS_CERT: 'a', FLEETGATE_TLS_KEY: 'b', FLEETGATE_TLS_CLIENT_CA: 'c', FLEETGATE_TLS_CLIENT_CRL: 'x.crl, y.crl' }).tlsClientCrl).toEqual(['x.crl', 'y.crl']);
  });

  it('takes the seed\'s SMQ_/MG_ names as aliases, FLEETGATE_ first; checks a sign-in provider is complete', () => {
    expect(loadConfig({}, { SMQ_GOOGLE_CLIENT_ID: 'smq', MG_GOOGLE_CLIENT_ID: 'mg', SMQ_GOOGLE_CLIENT_SECRET: 's', MG_GOOGLE_REDIRECT_URL: 'https://gw.example/oauth/callback/google' }).googleClientId).toBe('smq');
    expect(loadConfig({}, { MG_OAUTH_UI_ERROR_URL: 'https://ui.example/error' }).oauthUiErrorUrl).toBe('https://ui.example/error');
    expect(loadConfig({}, { FLEETGATE_GOOGLE_CLIENT_ID: 'fg', SMQ_GOOGLE_CLIENT_ID: 'smq', FLEETGATE_GOOGLE_CLIENT_SECRET: 's', FLEETGATE_GOOGLE_REDIRECT_URL: 'https://gw.example/oauth/callback/google' }).googleClientId).toBe('fg');
    expect(refusal({ SMQ_GOOGLE_CLIENT_ID: 'id' })).toContain('sign-in with google also needs FLEETGATE_GOOGLE_CLIENT_SECRET, FLEETGATE_GOOGLE_REDIRECT_URL');
    expect(refusal({ FLEETGATE_GOOGLE_CLIENT_ID: 'id', FLEETGATE_GOOGLE_CLIENT_SECRET: 's', FLEETGATE_GOOGLE_REDIRECT_URL: 'https://gw.example/callback' }))
      .toContain('FLEETGATE_GOOGLE_REDIRECT_URL must end in /oauth/callback/google');
    expect(refusal({ FLEETGATE_OAUTH_ISSUER: 'https://idp.example/realms/iot', FLEETGATE_OAUTH_PROVIDER: 'keycloak' }))
      .toContain('sign-in with keycloak also needs FLEETGATE_OAUTH_CLIENT_ID, FLEETGATE_OAUTH_CLIENT_SECRET, FLEETGATE_OAUTH_REDIRECT_URL');
    // Half a provider is never silently ignored, whichever half it is.
    expect(refusal({ FLEETGATE_OAUTH_CLIENT_SECRET: 's' })).toContain('sign-in with oidc also needs FLEETGATE_OAUTH_ISSUER, FLEETGATE_OAUTH_CLIENT_ID, FLEETGATE_OAUTH_REDIRECT_URL');
    expect(refusal({ FLEETGATE_OAUTH_PROVIDER: 'google' })).toContain('google is the preset');
    expect(refusal({ FLEETGATE_OAUTH_PROVIDER: 'Key Cloak' })).toContain('FLEETGATE_OAUTH_PROVIDER (--oauth-provider): lower-case letters, digits and -');
  });

  it('docs/CONFIG.md lists every variable with its default', () => {
    const doc = readFileSync(new URL('../../docs/CONFIG.md', import.meta.url), 'utf8');
    for (const setting of Object.values(kSettings)) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${setting.env}\``));
      expect(row, setting.env).toBeDefined();
      expect(row, setting.env).toContain(setting.default === '' ? '(none)' : `\`${setting.default}\``);
    }
  });
});
