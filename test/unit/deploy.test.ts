import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { kComposeFrontends, kComposeInstances } from '../../src/cluster/compose.ts';
import { haproxyConfig } from '../../src/cluster/haproxy.ts';
import { kSettings } from '../../src/config.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const compose = parse(read('deploy/compose.yaml'), { merge: true }) as {
  services: Record<string, { environment?: Record<string, string>; ports?: string[]; networks?: unknown; image?: string }>;
};
const knownEnv = new Set(Object.values(kSettings).map((s) => s.env));

describe('deploy/ (Docker Compose and HAProxy)', () => {
  it('haproxy.cfg is what the generator `fleetgate cluster` uses writes for the compose topology (npm run deploy:config)', () => {
    expect(read('deploy/haproxy.cfg')).toBe(haproxyConfig(kComposeFrontends, kComposeInstances));
  });

  it('has the services of the cluster: nats, postgres, redis, haproxy and one fleetgate per HAProxy server', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['haproxy', 'nats', 'postgres', 'redis', ...kComposeInstances.map((i) => i.name)].sort());
  });

  it('publishes on HAProxy exactly the frontends of its config', () => {
    const published = compose.services.haproxy!.ports!.map((p) => Number(p.split(':')[0]));
    expect(published.sort()).toEqual(Object.values(kComposeFrontends).sort());
  });

  it('gives every instance the shared bus and store, and trusts PROXY headers from HAProxy\'s address only', () => {
    const haproxyAddress = (compose.services.haproxy!.networks as { fleet: { ipv4_address: string } }).fleet.ipv4_address;
    for (const instance of kComposeInstances) {
      const env = compose.services[instance.name]!.environment!;
      expect(env.FLEETGATE_BUS).toBe('nats://nats:4222');
      expect(env.FLEETGATE_STORE).toMatch(/^postgres:\/\/[^@]+@postgres:5432\//);
      expect(env.FLEETGATE_TRUSTED_PROXIES).toBe(`${haproxyAddress}/32`);
      for (const key of Object.keys(env)) expect(knownEnv, `${instance.name}: ${key} is not a fleetgate setting`).toContain(key);
    }
  });

  it('configures HAProxy in TCP mode with PROXY v2 on plain listeners and readiness checks', () => {
    const cfg = read('deploy/haproxy.cfg');
    expect(cfg).toMatch(/^\s+mode tcp$/m);
    expect(cfg).toMatch(/default-server .*send-proxy-v2/);
    expect(cfg).toMatch(/uri \/health\/ready ver HTTP\/1\.1 hdr Host/);
    expect(cfg.match(/^\s+server fleetgate-\d fleetgate-\d:8443 .*no-send-proxy-v2$/gm)).toHaveLength(kComposeInstances.length);
  });
});
