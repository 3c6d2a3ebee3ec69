// The informer cache's bookkeeping, pure: what a relist or one watch event changes. A relist
// after 410 Gone (or after a watch broke) must not look like "everything was deleted and added
// again": an object present before and after is unchanged (same resourceVersion) or updated,
// and only objects missing from the fresh list are deleted.

export interface Change<T> {
  readonly type: 'added' | 'updated' | 'deleted';
  readonly key: string;
  /** The new object; for a delete, its final state. */
  readonly object: T;
}

export interface Keyed<T> {
  readonly keyOf: (object: T) => string;
  readonly versionOf: (object: T) => string;
}

/** The cache after a full list, and the changes against the cache before it. The input map is not touched. */
export function diffRelist<T>(cache: ReadonlyMap<string, T>, items: Iterable<T>, keyed: Keyed<T>): { next: Map<string, T>; changes: Change<T>[] } {
  const next = new Map<string, T>();
  for (const item of items) next.set(keyed.keyOf(item), item);
  const changes: Change<T>[] = [];
  for (const [key, object] of next) {
    const before = cache.get(key);
    if (before === undefined) changes.push({ type: 'added', key, object });
    else if (keyed.versionOf(before) !== keyed.versionOf(object)) changes.push({ type: 'updated', key, object });
  }
  for (const [key, object] of cache) if (!next.has(key)) changes.push({ type: 'deleted', key, object });
  return { next, changes };
}

/**
 * Applies one ADDED / MODIFIED / DELETED event to the cache (in place) and says what changed.
 * A repeat of what the cache already holds (same resourceVersion) changes nothing, and the type
 * follows the cache, not the event: MODIFIED of an unknown object is an add, DELETED of an
 * unknown one is nothing.
 */
export function applyEvent<T>(cache: Map<string, T>, type: 'ADDED' | 'MODIFIED' | 'DELETED', object: T, keyed: Keyed<T>): Change<T> | undefined {
  const key = keyed.keyOf(object);
  const before = cache.get(key);
  if (type === 'DELETED') {
    if (before === undefined) return undefined;
    cache.delete(key);
    return { type: 'deleted', key, object };
  }
  if (before !== undefined && keyed.versionOf(before) === keyed.versionOf(object)) return undefined;
  cache.set(key, object);
  return { type: before === undefined ? 'added' : 'updated', key, object };
}
