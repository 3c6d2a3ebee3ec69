// Immutability in fact, not only in type: the frozen config, published snapshots (shared by every
// in-flight check) and decisions. Object.freeze does not stop Map#set, hence a Map whose mutators
// throw once built.

const sealed = new WeakSet<object>();

export class FrozenMap<K, V> extends Map<K, V> {
  constructor(entries?: Iterable<readonly [K, V]>) {
    super(entries);
    sealed.add(this);
    Object.freeze(this);
  }

  override set(key: K, value: V): this {
    // Map's constructor fills itself through set(), before the instance is sealed.
    if (sealed.has(this)) throw new TypeError('cannot modify a frozen map');
    return super.set(key, value);
  }

  override delete(_key: K): boolean {
    throw new TypeError('cannot modify a frozen map');
  }

  override clear(): void {
    throw new TypeError('cannot modify a frozen map');
  }
}

/** Freezes plain objects, arrays and Map values recursively (cycle-safe). Byte buffers are left
 * as they are: Object.freeze throws on a non-empty typed array. */
export function deepFreeze<T>(value: T, seen: WeakSet<object> = new WeakSet()): T {
  if (value === null || typeof value !== 'object' || seen.has(value) || ArrayBuffer.isView(value)) return value;
  seen.add(value);
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v, seen);
    return value;
  }
  for (const v of Object.values(value)) deepFreeze(v, seen);
  return Object.freeze(value);
}
