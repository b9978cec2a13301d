import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { importSigningKey, signJwt, type KeyJwk } from '../../src/auth/jwt.ts';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import { cpuSeconds, type Fleetgate, type Server } from '../lib/servers.ts';
import { fmt, summarize } from '../lib/stats.ts';
import { runMeasured } from '../load/spawn.ts';

interface StormLoad {
  readonly ok: number;
  readonly refused: number;
  readonly failed: number;
  readonly firstError: string;
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpu: number;
}

/**
 * Access tokens of the bench admin's session, each new (a new jti), signed with the gateway's active key read from its
 * store: a token the gateway has never seen is a cache miss, verified by the worker pool.
 */
async function tokenMinter(gateway: Fleetgate): Promise<(count: number) => string[]> {
  const res = await fetch(`http://127.0.0.1:${gateway.port}/users/tokens/issue`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(gateway.admin) });
  const first = ((await res.json()) as { access_token: string }).access_token;
  const { sub, sid } = JSON.parse(Buffer.from(first.split('.')[1]!, 'base64url').toString()) as { sub: string; sid: string };
  const db = new Database(gateway.store, { readonly: true });
  const row = db.prepare("SELECT jwk FROM signing_keys WHERE status = 'active'").get() as { jwk: string };
  db.close();
  const key = importSigningKey(JSON.parse(row.jwk) as KeyJwk);
  return (count) => {
    const now = Math.floor(Date.now() / 1000);
    return Array.from({ length: count }, () => signJwt({ iss: 'fleetgate.auth', sub, sid, type: 0, jti: randomUUID(), iat: now, exp: now + 3600 }, key));
  };
}

export type StormResult = AbResult & { latency: { fleetgate: number; reference: number }; cpuPerConnectUs: { fleetgate: number; reference: number } };

/**
 * Connection storm: `count` MQTT clients connect, each with a token the gateway has never seen (the cold path: EdDSA
 * verification in the worker pool), and stay connected until all are answered; against mosquitto, anonymous (the same
 * CONNECT packets, tokens unread), from the same generator process (bench/load/mqtt-storm.ts). Connects per second,
 * CONNACK latency p99, and each server's CPU per connection. At most `concurrency` handshakes are in flight: mosquitto
 * listens with a backlog of 100, and beyond that its kernel queue overflows, SYNs are dropped and retried after 1 s,
 * which measures the backlog, not the broker (400 in flight: p99 1 s, a third of the rate). At 100 neither queue
 * overflows and the auth queue (FLEETGATE_AUTH_QUEUE_LIMIT, 4096) is never near full.
 */
export async function connectionStorm(count: number, gateway: Fleetgate, mosquitto: Server, o: LoadOptions, progress: (line: string) => void, concurrency = 100): Promise<StormResult> {
  const label = `connection-storm-${count}`;
  const mint = await tokenMinter(gateway);
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-storm-'));
  const targets = [
    { name: 'reference' as const, port: mosquitto.port, cpu: () => cpuSeconds(mosquitto.pid) },
    { name: 'fleetgate' as const, port: gateway.mqttPort, cpu: gateway.cpuSeconds },
  ];
  const rates = { fleetgate: [] as number[], reference: [] as number[] };
  const p99 = { fleetgate: [] as number[], reference: [] as number[] };
  const cpuUs = { fleetgate: [] as number[], reference: [] as number[] };
  const loop: number[] = [];
  let errors = 0;
  let firstError = '';
  try {
    for (let round = 0; round <= o.rounds; round++) {
      // Round 0 is a warm-up of a tenth of the storm, thrown away. Fresh tokens every round, the same for both servers.
      const n = round === 0 ? Math.ceil(count / 10) : count;
      const tokens = join(dir, `round-${round}`);
      writeFileSync(tokens, mint(n).join('\n'));
      for (const t of targets) {
        if (t.name === 'fleetgate') await gateway.eventLoopP99();
        const r = await runMeasured<StormLoad>('mqtt-storm.ts', { port: t.port, count: n, concurrency, tokens, prefix: `storm-${round}` }, t.cpu);
        if (t.name === 'fleetgate') loop.push(await gateway.eventLoopP99());
        if (round === 0) continue;
        const us = (r.serverCpu / Math.max(r.ok, 1)) * 1e6;
        rates[t.name].push(r.rate);
        p99[t.name].push(r.p99);
        cpuUs[t.name].push(us);
        errors += r.refused + r.failed;
        firstError ||= r.firstError;
        progress(`${label} round ${round}/${o.rounds} ${t.name.padEnd(9)} ${fmt(r.rate)} connects/s, CONNACK p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms, server ${us.toFixed(0)} µs CPU each, generator ${(r.cpu * 100).toFixed(0)}% CPU${r.refused + r.failed ? ` (${r.refused} refused, ${r.failed} failed: ${r.firstError})` : ''}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (v: number[]) => summarize(v).median;
  const fleetgate = summarize(rates.fleetgate);
  const reference = summarize(rates.reference);
  const cpuPerConnectUs = { fleetgate: median(cpuUs.fleetgate), reference: median(cpuUs.reference) };
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors, eventLoopP99: summarize(loop.slice(1)), unit: 'connects/s',
    latency: { fleetgate: median(p99.fleetgate), reference: median(p99.reference) }, cpuPerConnectUs,
    note: `${count} clients, ${concurrency} in flight, a new EdDSA token each; server CPU per connection ${cpuPerConnectUs.fleetgate.toFixed(0)} / ${cpuPerConnectUs.reference.toFixed(0)} µs${firstError ? `; first error: ${firstError}` : ''}`,
  };
}
