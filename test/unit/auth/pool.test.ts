import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthPool } from '../../../src/auth/pool.ts';
import type { KeyMaterial } from '../../../src/auth/key-material.ts';

function material(signing: KeyMaterial['own']['signing']): KeyMaterial {
  return { version: 1, own: { issuer: 'fleetgate.auth', signing, verify: [signing] }, external: null, clockTolerance: 0 };
}

describe('AuthPool readiness', () => {
  it('is ready once every worker has loaded, and then signs; close() right after the start is clean', async () => {
    const jwk = { ...generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' }), kid: 'k1', alg: 'EdDSA' } as KeyMaterial['own']['signing'];
    const pool = new AuthPool({ threads: 2, queueLimit: 10, material: material(jwk) });
    await pool.ready;
    expect((await pool.sign({ sub: 'u1', type: 0 } as never)).split('.')).toHaveLength(3);
    await pool.close();
    // Closed while the workers are still loading: waits for them instead of aborting the process.
    await new AuthPool({ threads: 2, queueLimit: 10, material: material(jwk) }).close();
  });

  it('reports a worker that cannot load its keys as a failed start, not a crash', async () => {
    const pool = new AuthPool({ threads: 2, queueLimit: 10, material: material({ kty: 'nonsense', kid: 'bad' } as never) });
    await expect(pool.ready).rejects.toThrow();
    await pool.close();
  });
});
