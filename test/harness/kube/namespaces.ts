// One namespace per test. The test control plane runs no controller-manager, so two things a
// cluster does on its own are done here: createNamespace() creates the `default` ServiceAccount (as
// the ServiceAccount controller would; ServiceAccount admission refuses pods without it), and
// cleanupNamespace() deletes the namespace's contents and then finalizes the namespace (as the
// namespace controller would), since a deleted namespace otherwise stays Terminating forever.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiException, CoordinationV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { crdResources } from './crds.ts';

const maxNameLength = 63;

/** `<prefix>-<8 hex>`, a valid namespace name (DNS-1123 label) that no other test uses. */
export function uniqueNamespace(prefix = 'test'): string {
  const suffix = randomBytes(4).toString('hex');
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, maxNameLength - suffix.length - 1)
    .replace(/-+$/, '');
  return clean === '' ? `ns-${suffix}` : `${clean}-${suffix}`;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

/** Creates the namespace (with labels) and its `default` ServiceAccount; returns the name. */
export async function createNamespace(kc: KubeConfig, name: string, options: { labels?: Record<string, string> } = {}): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name, ...(options.labels ? { labels: options.labels } : {}) } } });
  await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: 'default' } } });
  return name;
}

/**
 * Runs `call`, retrying while the API server answers 429 (a watch cache still filling after a start
 * or restart) — what client-go does on its own and client-node does not.
 */
export async function retryTooManyRequests<T>(call: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 429) || Date.now() >= deadline) throw err;
    }
    await sleep(200);
  }
}

async function ignoreNotFound(call: () => Promise<unknown>): Promise<void> {
  try {
    await retryTooManyRequests(call);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * Deletes what tests create in a namespace — Mandate's custom resources (finalizers cleared first:
 * no controller may be left to remove them), pods (immediately: no kubelet will confirm), service
 * accounts, secrets, config maps, events, leases, roles and role bindings — then the namespace,
 * and waits until it is gone. Objects of other kinds are not visible once the namespace is gone.
 */
export async function cleanupNamespace(kc: KubeConfig, namespace: string, options: { timeoutMs?: number } = {}): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);

  for (const r of (await crdResources()).filter((c) => c.namespaced)) {
    const base = { group: r.group, version: r.version, namespace, plural: r.plural };
    let items: { metadata?: { name?: string; finalizers?: string[] } }[];
    try {
      items = ((await retryTooManyRequests(() => custom.listNamespacedCustomObject(base))) as { items?: typeof items }).items ?? [];
    } catch (err) {
      if (isNotFound(err)) continue; // CRD not installed in this control plane
      throw err;
    }
    for (const item of items) {
      const name = item.metadata?.name;
      if (!name || !item.metadata?.finalizers?.length) continue;
      await ignoreNotFound(() => custom.patchNamespacedCustomObject({ ...base, name, body: [{ op: 'remove', path: '/metadata/finalizers' }] }));
    }
    await retryTooManyRequests(() => custom.deleteCollectionNamespacedCustomObject(base));
  }

  await retryTooManyRequests(() => core.deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 }));
  await retryTooManyRequests(() => core.deleteCollectionNamespacedServiceAccount({ namespace }));
  await retryTooManyRequests(() => core.deleteCollectionNamespacedSecret({ namespace }));
  await retryTooManyRequests(() => core.deleteCollectionNamespacedConfigMap({ namespace }));
  await retryTooManyRequests(() => core.deleteCollectionNamespacedEvent({ namespace }));
  await retryTooManyRequests(() => coordination.deleteCollectionNamespacedLease({ namespace }));
  await retryTooManyRequests(() => rbac.deleteCollectionNamespacedRoleBinding({ namespace }));
  await retryTooManyRequests(() => rbac.deleteCollectionNamespacedRole({ namespace }));

  await ignoreNotFound(() => core.deleteNamespace({ name: namespace }));
  // What the namespace controller does when the namespace is empty: drop the `kubernetes`
  // finalizer, after which the API server removes the namespace.
  await ignoreNotFound(() => core.replaceNamespaceFinalize({ name: namespace, body: { metadata: { name: namespace }, spec: { finalizers: [] } } }));
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    try {
      await core.readNamespace({ name: namespace });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (Date.now() >= deadline) throw new Error(`namespace ${namespace} still exists after cleanup`);
    await sleep(100);
  }
}
