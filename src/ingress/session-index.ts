/** key -> set of live connections, so a registry change finds the affected ones without a scan. */
export class SessionIndex<S> {
  private readonly byKey = new Map<string, Set<S>>();

  add(key: string, session: S): void {
    let set = this.byKey.get(key);
    if (set === undefined) this.byKey.set(key, (set = new Set()));
    set.add(session);
  }

  delete(key: string, session: S): void {
    const set = this.byKey.get(key);
    if (set?.delete(session) && set.size === 0) this.byKey.delete(key);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** A copy: callers may close (and so remove) sessions while they iterate. */
  get(key: string): S[] {
    return [...(this.byKey.get(key) ?? [])];
  }
}
