// The CA trust bundle (PEM of every trusted root, several during a CA rotation) published as a
// ConfigMap in each namespace that has at least one AgentIdentity, so workloads there can verify
// agents' SVIDs. Mandate owns only the ConfigMaps it created, recognised by its managed-by label:
// a same-named ConfigMap without the label is a user's and is never modified or deleted.
import { MandateError } from '../errors.ts';
import type { Snapshot } from '../store/snapshot.ts';

export const TRUST_BUNDLE_NAME = 'mandate-trust-bundle';
export const TRUST_BUNDLE_KEY = 'bundle.pem';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'mandate';
export const trustBundleLabels: Readonly<Record<string, string>> = Object.freeze({
  [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
  'app.kubernetes.io/component': 'trust-bundle',
});

export interface ConfigMapState {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly resourceVersion: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly data: Readonly<Record<string, string>>;
}

export interface ConfigMapWrite {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly data: Readonly<Record<string, string>>;
}

export interface ConfigMapApi {
  get(namespace: string, name: string): Promise<ConfigMapState | undefined>;
  /** KUBE_CONFLICT when it exists already. */
  create(namespace: string, name: string, write: ConfigMapWrite): Promise<void>;
  /** KUBE_CONFLICT when it is no longer at `resourceVersion`. */
  replace(namespace: string, name: string, resourceVersion: string, write: ConfigMapWrite): Promise<void>;
  /** Deletes only that incarnation (uid) at that version; gone already is fine. */
  delete(namespace: string, name: string, uid: string, resourceVersion: string): Promise<void>;
  /** Namespaces holding a ConfigMap `name` with Mandate's managed-by label, across the cluster. */
  listManagedNamespaces(name: string): Promise<string[]>;
}

/** Namespaces with at least one AgentIdentity. */
export function bundleNamespaces(snapshot: Snapshot): Set<string> {
  const out = new Set<string>();
  for (const identity of snapshot.identities.values()) out.add(identity.metadata.namespace ?? 'default');
  return out;
}

export const isManaged = (cm: Pick<ConfigMapState, 'labels'>): boolean => cm.labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;

export type BundlePlan =
  | { readonly kind: 'none' }
  | { readonly kind: 'create'; readonly write: ConfigMapWrite }
  | { readonly kind: 'update'; readonly write: ConfigMapWrite; readonly resourceVersion: string }
  | { readonly kind: 'delete'; readonly uid: string; readonly resourceVersion: string }
  /** A ConfigMap of that name exists and is not Mandate's. */
  | { readonly kind: 'foreign' };

/** What to do in one namespace: `bundle` is the wanted content, undefined when none is wanted. */
export function planTrustBundle(bundle: string | undefined, current: ConfigMapState | undefined): BundlePlan {
  if (bundle === undefined) {
    return current && isManaged(current) ? { kind: 'delete', uid: current.uid, resourceVersion: current.resourceVersion } : { kind: 'none' };
  }
  if (!current) return { kind: 'create', write: { labels: trustBundleLabels, annotations: {}, data: { [TRUST_BUNDLE_KEY]: bundle } } };
  if (!isManaged(current)) return { kind: 'foreign' };
  const labelsOk = Object.entries(trustBundleLabels).every(([k, v]) => current.labels[k] === v);
  const dataOk = current.data[TRUST_BUNDLE_KEY] === bundle && Object.keys(current.data).length === 1;
  if (labelsOk && dataOk) return { kind: 'none' };
  return {
    kind: 'update',
    resourceVersion: current.resourceVersion,
    // Labels and annotations others added (a GitOps tool, a reloader) survive the update.
    write: { labels: { ...current.labels, ...trustBundleLabels }, annotations: current.annotations, data: { [TRUST_BUNDLE_KEY]: bundle } },
  };
}

/** Brings one namespace's trust bundle ConfigMap to `bundle` (or removes it). Returns what it did. */
export async function reconcileTrustBundle(api: ConfigMapApi, namespace: string, bundle: string | undefined): Promise<BundlePlan['kind']> {
  const current = await api.get(namespace, TRUST_BUNDLE_NAME);
  const plan = planTrustBundle(bundle, current);
  switch (plan.kind) {
    case 'none':
      break;
    case 'create':
      await api.create(namespace, TRUST_BUNDLE_NAME, plan.write);
      break;
    case 'update':
      await api.replace(namespace, TRUST_BUNDLE_NAME, plan.resourceVersion, plan.write);
      break;
    case 'delete':
      await api.delete(namespace, TRUST_BUNDLE_NAME, plan.uid, plan.resourceVersion);
      break;
    case 'foreign':
      throw new MandateError(
        'KUBE_REQUEST',
        `ConfigMap ${namespace}/${TRUST_BUNDLE_NAME} exists without the label ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}; Mandate does not overwrite it, so this namespace gets no trust bundle until it is removed`,
        { namespace },
      );
  }
  return plan.kind;
}
