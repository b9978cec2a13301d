import { describe, expect, it } from 'vitest';
import { defaultResetUrl } from '../../../src/users/reset-link.ts';

describe('defaultResetUrl', () => {
  it.each([
    ['0.0.0.0', { http: 9000, https: 9443 }, 'http://localhost:9000/password/reset'],
    ['127.0.0.1', { http: 8080, https: null }, 'http://127.0.0.1:8080/password/reset'],
    ['0.0.0.0', { http: null, https: 9443 }, 'https://localhost:9443/password/reset'],
    ['::1', { http: 8081, https: null }, 'http://[::1]:8081/password/reset'],
    ['::', { http: 8081, https: null }, 'http://localhost:8081/password/reset'],
  ])('points at the listener actually bound: host %s, ports %j', (host, ports, url) => {
    expect(defaultResetUrl(host, ports)).toBe(url);
  });
});
