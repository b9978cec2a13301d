import { describe, expect, it } from 'vitest';
import { claimAt } from '../../../src/auth/claims.ts';

// A Keycloak access token's claims, plus an Auth0-style namespaced one.
const claims = JSON.parse(`{
  "sub": "f3c1", "preferred_username": "thermostat-7", "azp": "thermostat-app",
  "realm_access": { "roles": ["offline_access", "sensor"] },
  "resource_access": { "fleetgate": { "roles": ["viewer"] } },
  "https://example.com/roles": ["admin"]
}`);

describe('auth/claims claimAt', () => {
  it.each([
    ['sub', 'f3c1'],
    ['preferred_username', 'thermostat-7'],
    ['realm_access.roles', ['offline_access', 'sensor']],
    ['resource_access.fleetgate.roles', ['viewer']],
    ['realm_access.roles.1', 'sensor'],
    ['https://example.com/roles', ['admin']],
    ['realm_access.missing', undefined],
    ['sub.length', undefined],
    ['constructor', undefined],
    ['realm_access.constructor', undefined],
    ['__proto__', undefined],
  ])('%s -> %j', (path, value) => {
    expect(claimAt(claims, path)).toEqual(value);
  });
});
