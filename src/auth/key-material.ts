import type { KeyJwk } from './jwt.ts';

/**
 * Everything the workers need to sign and verify, as plain JSON: sent once at start and again on every change
 * (rotation, external JWKS refresh), never with a task. `version` only grows.
 */
export interface KeyMaterial {
  readonly version: number;
  readonly own: {
    readonly issuer: string;
    /** private JWK of the active signing key */
    readonly signing: KeyJwk;
    /** every key that still verifies (active and retiring), private parts included for HMAC only */
    readonly verify: readonly KeyJwk[];
  };
  readonly external: {
    readonly issuer: string;
    readonly audience: string | undefined;
    readonly keys: readonly KeyJwk[];
  } | null;
  readonly clockTolerance: number;
}

/** What a worker answers for one token. */
export type VerifyOutcome =
  | { readonly ok: true; readonly source: 'own' | 'external'; readonly claims: Record<string, unknown> }
  | { readonly ok: false; readonly source: 'own' | 'external'; readonly reason: string; readonly message: string };

export const kKeysChannel = 'fleetgate-auth-keys';

/** A worker's answer when it lacks the key version a task needs: send the task again with the material. */
export const kStale = 'stale-keys';
/** posted by a worker once its module is loaded: terminating a worker in the middle of that load aborts Node 20 */
export const kWorkerLoaded = 'fleetgate-worker-loaded';
