import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { importSigningKey, signJwt, type KeyJwk } from '../../src/auth/jwt.ts';
import { abRun, type AbResult, type LoadOptions } from '../lib/ab.ts';
import type { Fleetgate, Server } from '../lib/servers.ts';
import { kSenmlBody } from './http-publish.ts';

async function signIn(gateway: Fleetgate): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gateway.port}/users/tokens/issue`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(gateway.admin),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

/** HTTP publish with one access token, verified once and then answered from the cache. */
export async function jwtCached(gateway: Fleetgate, reference: Server, o: LoadOptions, progress: (line: string) => void): Promise<AbResult> {
  const token = await signIn(gateway);
  return abRun('http-publish-jwt-cached', [
    { name: 'reference', url: `http://127.0.0.1:${reference.port}/http/x`, headers: { 'content-type': 'application/senml+json' }, body: kSenmlBody },
    { name: 'fleetgate', url: `http://127.0.0.1:${gateway.port}/http/${gateway.topic}`, headers: { 'content-type': 'application/senml+json', authorization: `Bearer ${token}` }, body: kSenmlBody, eventLoopP99: gateway.eventLoopP99 },
  ], o, progress);
}

/**
 * HTTP publish with a token never seen before on every request: each is a cache miss verified by the worker pool
 * (EdDSA, the default). Tokens are minted by the bench with the gateway's own signing key, read from its store, for a
 * real session. No pipelining: a pipelined cold request closes its connection on this uWS build (see the README).
 * With `rate`, the load is paced below saturation: there the event-loop delay shows whether verification blocks the
 * loop (at saturation it only shows that the loop is busy, crypto or not: compare http-publish-senml).
 */
export async function jwtCold(gateway: Fleetgate, reference: Server, o: LoadOptions, progress: (line: string) => void, rate?: number): Promise<AbResult> {
  const first = await signIn(gateway);
  const { sub, sid } = JSON.parse(Buffer.from(first.split('.')[1]!, 'base64url').toString()) as { sub: string; sid: string };
  const db = new Database(gateway.store, { readonly: true });
  const row = db.prepare("SELECT jwk FROM signing_keys WHERE status = 'active'").get() as { jwk: string };
  db.close();
  const key = importSigningKey(JSON.parse(row.jwk) as KeyJwk);
  // Enough fresh tokens for the warm-up and every round, at up to 40k verifications/s.
  const needed = 40_000 * (o.duration * o.rounds + 1);
  progress(`http-publish-jwt-cold: minting ${needed.toLocaleString('en-US')} EdDSA tokens`);
  const now = Math.floor(Date.now() / 1000);
  const tokens = Array.from({ length: needed }, () => signJwt({ iss: 'fleetgate.auth', sub, sid, type: 0, jti: randomUUID(), iat: now, exp: now + 3600 }, key));
  let next = 0;
  const cold = { ...o, pipelining: 1, rate };
  return abRun(rate ? `http-publish-jwt-cold-${rate}` : 'http-publish-jwt-cold', [
    { name: 'reference', url: `http://127.0.0.1:${reference.port}/http/x`, headers: { 'content-type': 'application/senml+json' }, body: kSenmlBody },
    {
      name: 'fleetgate', url: `http://127.0.0.1:${gateway.port}/http/${gateway.topic}`, headers: { 'content-type': 'application/senml+json' }, body: kSenmlBody,
      nextHeaders: () => ({ authorization: `Bearer ${tokens[next++ % tokens.length]}` }),
      eventLoopP99: gateway.eventLoopP99,
    },
  ], cold, progress);
}
