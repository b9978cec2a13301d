import type { Principal } from '../types.ts';

/**
 * The registry objects a principal depends on, as index keys: what a cached verification or a live connection must be
 * re-checked for when one of them changes. An external principal depends on nothing but its token.
 */
export function ownersOf(p: Principal): string[] {
  return p.kind === 'user' ? ['user:' + p.id, 'session:' + p.sessionId] : p.kind === 'client' ? ['client:' + p.id] : [];
}
