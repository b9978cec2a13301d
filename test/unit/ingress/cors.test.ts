import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { GatewayError } from '../../../src/errors.ts';
import { corsPolicy } from '../../../src/ingress/cors.ts';

describe('ingress/cors', () => {
  it('FLEETGATE_CORS_ORIGINS takes exact origins and `*`; empty is none', () => {
    expect(loadConfig({}, {}).corsOrigins).toEqual([]);
    expect(loadConfig({}, { FLEETGATE_CORS_ORIGINS: 'https://a.example, http://localhost:5173,*' }).corsOrigins)
      .toEqual(['https://a.example', 'http://localhost:5173', '*']);
  });

  it.each(['https://a.example/', 'https://a.example/app', 'a.example', 'null'])('refuses %s, which is not an origin', (bad) => {
    const load = () => loadConfig({}, { FLEETGATE_CORS_ORIGINS: bad });
    expect(load).toThrow(GatewayError);
    expect(load).toThrow(/FLEETGATE_CORS_ORIGINS/);
  });

  it('credentials only for listed origins; `*` grants the rest without them', () => {
    const listedOnly = corsPolicy(['https://a.example']);
    expect(listedOnly.grant('https://a.example')).toContainEqual(['access-control-allow-credentials', 'true']);
    expect(listedOnly.grant('https://b.example')).toBeUndefined();
    const open = corsPolicy(['https://a.example', '*']);
    expect(open.grant('https://b.example')).toContainEqual(['access-control-allow-origin', '*']);
    expect(open.grant('https://b.example')!.some(([key]) => key === 'access-control-allow-credentials')).toBe(false);
    expect(open.listed('https://b.example')).toBe(false);
    expect(open.listed('https://a.example')).toBe(true);
  });
});
