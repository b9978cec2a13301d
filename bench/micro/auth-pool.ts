import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { deserialize, serialize } from 'node:v8';
import { pack, unpack } from 'msgpackr';
import { Piscina } from 'piscina';
import { importVerifyKey, signJwt, verifyJwt, type KeyJwk, type SigningKey } from '../../src/auth/jwt.ts';
import type { KeyMaterial } from '../../src/auth/key-material.ts';
import { AuthPool } from '../../src/auth/pool.ts';
import { fmt } from '../lib/stats.ts';

/**
 * What the auth worker pool buys, on this machine: inline verification on one core (node:crypto) against the pool
 * with one task per token and with batches of 64, plus the cost of the two ways to carry a batch to a worker.
 * `npm run bench:micro` (after `npm run build`: the workers run dist/).
 */
const kTokens = 40_000;
const now = Math.floor(Date.now() / 1000);
const claims = () => ({ iss: 'fleetgate.auth', sub: 'u', sid: 's', type: 0, jti: randomUUID(), iat: now, exp: now + 3600 });

function keyPair(alg: 'EdDSA' | 'ES256') {
  const { privateKey } = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: alg, alg } as KeyJwk;
  return { jwk, signing: { kid: alg, alg, key: privateKey } as SigningKey };
}

function rate(label: string, count: number, ms: number): number {
  const perSecond = (count / ms) * 1000;
  process.stdout.write(`| ${label} | ${fmt(perSecond)} /s |\n`);
  return perSecond;
}

process.stdout.write('| measurement | rate |\n|---|---|\n');
const results: Record<string, number> = {};
const replies: unknown[] = [];
for (const alg of ['ES256', 'EdDSA'] as const) {
  const { jwk, signing } = keyPair(alg);
  const key = importVerifyKey(jwk);
  const tokens = Array.from({ length: 8000 }, () => signJwt(claims(), signing));
  const t = performance.now();
  for (const token of tokens) verifyJwt(token, () => key, { issuer: 'fleetgate.auth', audience: undefined, now, clockTolerance: 5 });
  results[`inline-${alg}`] = rate(`${alg} verify inline, one core (node:crypto)`, tokens.length, performance.now() - t);
}

const workerFile = new URL('../../dist/auth/worker.js', import.meta.url).href;
for (const alg of ['ES256', 'EdDSA'] as const) {
  const { jwk, signing } = keyPair(alg);
  const material: KeyMaterial = { version: 1, own: { issuer: 'fleetgate.auth', signing: jwk, verify: [jwk] }, external: null, clockTolerance: 5 };
  const tokens = Array.from({ length: kTokens }, () => signJwt(claims(), signing));

  // One task per token, straight through piscina: what a pool without batching would do.
  const piscina = new Piscina({ filename: workerFile, minThreads: 2, maxThreads: 2, workerData: { keys: material } });
  await Promise.all(tokens.slice(0, 2000).map((token) => piscina.run({ tokens: [token], version: 1 }, { name: 'verifyBatch' })));
  let t = performance.now();
  await Promise.all(tokens.map((token) => piscina.run({ tokens: [token], version: 1 }, { name: 'verifyBatch' })));
  results[`pool-single-${alg}`] = rate(`${alg} verify, pool of 2 workers, one task per token`, kTokens, performance.now() - t);
  await piscina.destroy();

  // fleetgate's pool: batches of up to 64 per task.
  const pool = new AuthPool({ threads: 2, queueLimit: kTokens * 2, material });
  await Promise.all(tokens.slice(0, 2000).map((token) => pool.verify(token)));
  t = performance.now();
  const outcomes = await Promise.all(tokens.map((token) => pool.verify(token)));
  results[`pool-batched-${alg}`] = rate(`${alg} verify, pool of 2 workers, batches of 64 (fleetgate)`, kTokens, performance.now() - t);
  if (!outcomes.every((o) => o !== 'busy' && o.ok)) throw new Error('a verification failed');
  await pool.close();
  if (alg === 'EdDSA') replies.push(...(outcomes.slice(0, 64) as unknown[]), ...tokens.slice(0, 64));
}

// The message a batch makes, both ways: what postMessage does (v8 structured serialisation) against msgpack.
const batch = { tokens: replies.slice(64), version: 1 };
const reply = replies.slice(0, 64);
for (const [label, roundTrip] of [
  ['structured clone (v8.serialize)', () => deserialize(serialize(batch)) && deserialize(serialize(reply))],
  ['msgpack (msgpackr)', () => unpack(pack(batch)) && unpack(pack(reply))],
] as const) {
  for (let i = 0; i < 2000; i++) roundTrip();
  const t = performance.now();
  for (let i = 0; i < 20_000; i++) roundTrip();
  results[label] = rate(`batch of 64 + its answers, encode + decode: ${label}`, 20_000, performance.now() - t);
}

process.stdout.write(`\npool (batched) / one core inline, same algorithm: ES256 ${(results['pool-batched-ES256']! / results['inline-ES256']!).toFixed(2)}x, EdDSA ${(results['pool-batched-EdDSA']! / results['inline-EdDSA']!).toFixed(2)}x; batched / one task per token (EdDSA): ${(results['pool-batched-EdDSA']! / results['pool-single-EdDSA']!).toFixed(2)}x\n`);
