import { BroadcastChannel, parentPort, workerData } from 'node:worker_threads';
import { decodeJws, importSigningKey, importVerifyKey, signJwt, verifyDecoded, type JwtClaims, type SigningKey, type VerifyKey } from './jwt.ts';
import { kKeysChannel, kStale, kWorkerLoaded, type KeyMaterial, type VerifyOutcome } from './key-material.ts';

/**
 * Auth worker (piscina): token crypto, none on the event loop (passwords have their own pool: hash-worker.ts). Named
 * tasks, plain data in and out. Keys arrive in workerData and then by broadcast; a task that names a newer version
 * than the worker has is answered kStale.
 */
interface Keys {
  readonly version: number;
  readonly material: KeyMaterial;
  readonly signing: SigningKey;
  readonly own: Map<string | undefined, VerifyKey>;
  readonly external: Map<string | undefined, VerifyKey>;
}

function load(material: KeyMaterial): Keys {
  const byKid = (list: readonly VerifyKey[]) => {
    const map = new Map<string | undefined, VerifyKey>(list.map((k) => [k.kid, k]));
    if (list.length === 1) map.set(undefined, list[0]!); // a lone key also verifies tokens that name no kid
    return map;
  };
  return {
    version: material.version,
    material,
    signing: importSigningKey(material.own.signing),
    own: byKid(material.own.verify.map(importVerifyKey)),
    external: byKid((material.external?.keys ?? []).map(importVerifyKey)),
  };
}

let keys = load((workerData as { keys: KeyMaterial }).keys);
const channel = new BroadcastChannel(kKeysChannel);
channel.onmessage = (event) => adopt((event as { data: KeyMaterial }).data);
// Do not keep the worker alive for the channel alone.
(channel as unknown as { unref(): void }).unref();

function adopt(material: KeyMaterial | undefined): void {
  if (material !== undefined && material.version > keys.version) keys = load(material);
}

/**
 * The keys a task asks for. A broadcast sent before this worker listened is lost, so a worker that is behind does
 * not wait: it answers kStale, and the pool sends the task again with the material attached.
 */
function current(version: number, material: KeyMaterial | undefined): Keys | undefined {
  adopt(material);
  return keys.version >= version ? keys : undefined;
}

function verifyOne(k: Keys, token: string, now: number): VerifyOutcome {
  const jws = decodeJws(token);
  if (!jws.ok) return { ok: false, source: 'own', reason: jws.reason, message: jws.message };
  // The (unverified) issuer picks the key set; the signature and the issuer check then decide.
  const external = k.material.external;
  const source = external !== null && jws.claims.iss === external.issuer ? 'external' : 'own';
  const result = source === 'external'
    ? verifyDecoded(jws, (kid) => k.external.get(kid), { issuer: external!.issuer, audience: external!.audience, now, clockTolerance: k.material.clockTolerance })
    : verifyDecoded(jws, (kid) => k.own.get(kid), { issuer: k.material.own.issuer, audience: undefined, now, clockTolerance: k.material.clockTolerance });
  return result.ok ? { ok: true, source, claims: result.claims as Record<string, unknown> } : { ok: false, source, reason: result.reason, message: result.message };
}

/** Verifies a batch: one message round trip for many tokens (a round trip costs more than an EdDSA verify). */
export function verifyBatch({ tokens, version, material }: { tokens: string[]; version: number; material?: KeyMaterial }): VerifyOutcome[] | typeof kStale {
  const k = current(version, material);
  if (k === undefined) return kStale;
  const now = Date.now() / 1000;
  return tokens.map((token) => verifyOne(k, token, now));
}

export function sign({ claims, version, material }: { claims: JwtClaims; version: number; material?: KeyMaterial }): string | typeof kStale {
  const k = current(version, material);
  return k === undefined ? kStale : signJwt(claims, k.signing);
}

parentPort?.postMessage(kWorkerLoaded);
