import type { ViewListener } from './registry/view.ts';
import type { Principal } from './types.ts';

/**
 * Things indexed by what they depend on — live connections by principal and channel, cached verifications by
 * principal — so that a registry change reaches exactly the affected ones, without a scan.
 */
export class Dependents<T> {
  private readonly byKey = new Map<string, Set<T>>();

  add(key: string, item: T): void {
    let set = this.byKey.get(key);
    if (set === undefined) this.byKey.set(key, (set = new Set()));
    set.add(item);
  }

  delete(key: string, item: T): void {
    const set = this.byKey.get(key);
    if (set?.delete(item) && set.size === 0) this.byKey.delete(key);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** A copy: callers may close (and so remove) items while they iterate. */
  get(key: string): T[] {
    return [...(this.byKey.get(key) ?? [])];
  }

  /** Removes the key and returns what depended on it. */
  take(key: string): T[] {
    const items = this.get(key);
    this.byKey.delete(key);
    return items;
  }

  clear(): void {
    this.byKey.clear();
  }
}

/**
 * The registry objects a principal depends on, as keys. An external principal depends on nothing but its token.
 */
export function ownersOf(p: Principal): string[] {
  return p.kind === 'user' ? ['user:' + p.id, 'session:' + p.sessionId] : p.kind === 'client' ? ['client:' + p.id] : [];
}

/** A registry listener that re-checks the connections depending on whatever changed. */
export function recheckOnChange<T>(byOwner: Dependents<T>, byChannel: Dependents<T>, recheck: (item: T) => void): ViewListener {
  return {
    clientChanged: (id) => byOwner.get('client:' + id).forEach(recheck),
    userChanged: (id) => byOwner.get('user:' + id).forEach(recheck),
    sessionChanged: (id) => byOwner.get('session:' + id).forEach(recheck),
    channelChanged: (id) => byChannel.get(id).forEach(recheck),
  };
}
