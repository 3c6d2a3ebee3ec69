// Work-queue keys. Object keys are `Kind/namespace/name`; a trust bundle is `TrustBundle/namespace`;
// two singletons stand for "look at the new snapshot" and "look at everything". Keys name things,
// never carry state: the handler reads the newest state when the key comes up.
import { managedKinds, type ManagedKind } from './status.ts';

export const SNAPSHOT_KEY = 'Snapshot';
export const RESYNC_KEY = 'Resync';
const TRUST_BUNDLE = 'TrustBundle';

export type ParsedKey =
  | { readonly kind: ManagedKind; readonly namespace: string; readonly name: string }
  | { readonly kind: 'TrustBundle'; readonly namespace: string }
  | { readonly kind: 'Snapshot' }
  | { readonly kind: 'Resync' };

export const objectQueueKey = (kind: ManagedKind, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;
export const trustBundleKey = (namespace: string): string => `${TRUST_BUNDLE}/${namespace}`;

export function parseKey(key: string): ParsedKey | undefined {
  if (key === SNAPSHOT_KEY) return { kind: 'Snapshot' };
  if (key === RESYNC_KEY) return { kind: 'Resync' };
  const parts = key.split('/');
  if (parts[0] === TRUST_BUNDLE && parts.length === 2 && parts[1]) return { kind: 'TrustBundle', namespace: parts[1] };
  const [kind, namespace, name] = parts;
  if (parts.length !== 3 || !namespace || !name || !managedKinds.includes(kind as ManagedKind)) return undefined;
  return { kind: kind as ManagedKind, namespace, name };
}

/** The metric / log label of a key: its kind, a handful of values. */
export function keyKind(key: string): string {
  return parseKey(key)?.kind ?? 'Unknown';
}

/** `Kind namespace/name` (the form ManifestProblem.object uses) → its parts. */
export function parseObjectLabel(label: string): { kind: ManagedKind; namespace: string; name: string } | undefined {
  const m = /^(\S+) ([^/\s]+)\/([^/\s]+)$/.exec(label);
  if (!m || !managedKinds.includes(m[1] as ManagedKind)) return undefined;
  return { kind: m[1] as ManagedKind, namespace: m[2] as string, name: m[3] as string };
}
