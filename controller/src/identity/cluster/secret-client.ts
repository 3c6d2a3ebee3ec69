// The few Secret operations the CA and the JWT keys need, behind a narrow interface so the
// logic above it is tested with an in-memory fake and runs against the real API server through
// @kubernetes/client-node. Values cross this boundary decoded (UTF-8 text); nothing here logs them.
import { CoreV1Api, Watch, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { kubeStatus } from './kube-errors.ts';

export interface SecretRecord {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly resourceVersion: string;
  readonly type: string;
  /** Decoded values. Never log them. */
  readonly data: ReadonlyMap<string, string>;
}

export type SecretWatchEvent =
  | { readonly type: 'ADDED' | 'MODIFIED'; readonly secret: SecretRecord }
  | { readonly type: 'DELETED'; readonly resourceVersion: string }
  | { readonly type: 'BOOKMARK'; readonly resourceVersion: string }
  /** The watch cannot continue from its resourceVersion (410 Gone, or another server error). */
  | { readonly type: 'ERROR'; readonly code: number; readonly message: string };

export interface SecretWatchHandle {
  stop(): void;
}

export interface SecretClient {
  /** undefined when the Secret does not exist. */
  get(namespace: string, name: string): Promise<SecretRecord | undefined>;
  /** Creates the Secret; `undefined` when one with that name already exists (409). */
  create(namespace: string, name: string, data: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): Promise<SecretRecord | undefined>;
  /** Replaces the data of `current` if it is unchanged; `undefined` on a conflict (409). */
  replace(current: SecretRecord, data: Readonly<Record<string, string>>): Promise<SecretRecord | undefined>;
  /**
   * Watches one Secret from `resourceVersion` ('' = its current state, then changes). `onDone` is
   * called once when the watch ends for any reason other than stop(): a server-side timeout (err
   * undefined) or a failure.
   */
  watch(
    namespace: string,
    name: string,
    resourceVersion: string,
    onEvent: (event: SecretWatchEvent) => void,
    onDone: (err: unknown) => void,
  ): Promise<SecretWatchHandle>;
}

interface RawSecret {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
  type?: string;
  data?: Record<string, string> | null;
}

/** A Secret from the typed client or from a raw watch event (both carry base64 `data`). */
export function secretRecord(raw: RawSecret | V1Secret): SecretRecord {
  const data = new Map<string, string>();
  for (const [k, v] of Object.entries(raw.data ?? {})) {
    if (typeof v === 'string') data.set(k, Buffer.from(v, 'base64').toString('utf8'));
  }
  return {
    namespace: raw.metadata?.namespace ?? '',
    name: raw.metadata?.name ?? '',
    uid: raw.metadata?.uid ?? '',
    resourceVersion: raw.metadata?.resourceVersion ?? '',
    type: raw.type ?? 'Opaque',
    data,
  };
}

function encode(data: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) out[k] = Buffer.from(v, 'utf8').toString('base64');
  return out;
}

export function kubeSecretClient(kc: KubeConfig): SecretClient {
  const core = kc.makeApiClient(CoreV1Api);
  const watcher = new Watch(kc);
  return {
    async get(namespace, name) {
      try {
        return secretRecord(await core.readNamespacedSecret({ namespace, name }));
      } catch (err) {
        if (kubeStatus(err) === 404) return undefined;
        throw err;
      }
    },
    async create(namespace, name, data, labels) {
      const body: V1Secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, labels: { ...labels } }, type: 'Opaque', data: encode(data) };
      try {
        return secretRecord(await core.createNamespacedSecret({ namespace, body }));
      } catch (err) {
        if (kubeStatus(err) === 409) return undefined;
        throw err;
      }
    },
    async replace(current, data) {
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        // The resourceVersion makes this a compare-and-swap: a concurrent writer gets a 409.
        metadata: { name: current.name, namespace: current.namespace, resourceVersion: current.resourceVersion },
        type: current.type,
        data: encode(data),
      };
      try {
        return secretRecord(await core.replaceNamespacedSecret({ namespace: current.namespace, name: current.name, body }));
      } catch (err) {
        if (kubeStatus(err) === 409) return undefined;
        throw err;
      }
    },
    async watch(namespace, name, resourceVersion, onEvent, onDone) {
      let stopped = false;
      const controller = await watcher.watch(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
        // A name field selector lets RBAC restrict list/watch to this Secret by resourceNames.
        { fieldSelector: `metadata.name=${name}`, resourceVersion: resourceVersion || undefined, allowWatchBookmarks: true },
        (phase: string, obj: unknown) => {
          if (stopped) return;
          const o = (obj ?? {}) as RawSecret & { code?: number; message?: string };
          if (phase === 'ADDED' || phase === 'MODIFIED') onEvent({ type: phase, secret: secretRecord(o) });
          else if (phase === 'DELETED') onEvent({ type: 'DELETED', resourceVersion: o.metadata?.resourceVersion ?? '' });
          else if (phase === 'BOOKMARK') onEvent({ type: 'BOOKMARK', resourceVersion: o.metadata?.resourceVersion ?? '' });
          else if (phase === 'ERROR') onEvent({ type: 'ERROR', code: typeof o.code === 'number' ? o.code : 500, message: String(o.message ?? 'watch error') });
        },
        (err: unknown) => {
          if (stopped) return;
          stopped = true;
          onDone(err ?? undefined);
        },
      );
      return {
        stop() {
          if (stopped) return;
          stopped = true;
          controller.abort();
        },
      };
    },
  };
}
