// @peculiar/x509 registers its algorithms in a tsyringe container, and tsyringe refuses to load
// unless the Reflect metadata API exists. Pulling in a full polyfill package for three functions
// is not worth a dependency: tsyringe only reads and writes per-class metadata (no decorators with
// emitted design types are involved), so a WeakMap keyed by target is a complete implementation
// of what it uses. An existing polyfill, if some other code loaded one first, is left alone.
type MetadataKey = string | symbol;
type PropertyKeyOrNone = string | symbol | undefined;

const store = new WeakMap<object, Map<PropertyKeyOrNone, Map<MetadataKey, unknown>>>();

function table(target: object, property: PropertyKeyOrNone, create: boolean): Map<MetadataKey, unknown> | undefined {
  let byProperty = store.get(target);
  if (!byProperty) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let entries = byProperty.get(property);
  if (!entries && create) {
    entries = new Map();
    byProperty.set(property, entries);
  }
  return entries;
}

function getOwnMetadata(key: MetadataKey, target: object, property?: string | symbol): unknown {
  return table(target, property, false)?.get(key);
}

function getMetadata(key: MetadataKey, target: object, property?: string | symbol): unknown {
  for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
    const entries = table(t, property, false);
    if (entries?.has(key)) return entries.get(key);
  }
  return undefined;
}

function defineMetadata(key: MetadataKey, value: unknown, target: object, property?: string | symbol): void {
  table(target, property, true)?.set(key, value);
}

const reflect = Reflect as unknown as Record<string, unknown>;
for (const [name, fn] of Object.entries({ getOwnMetadata, getMetadata, defineMetadata })) {
  if (typeof reflect[name] !== 'function') {
    Object.defineProperty(Reflect, name, { value: fn, writable: true, configurable: true, enumerable: false });
  }
}
