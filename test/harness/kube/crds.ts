// The repository's CRDs (crds/*.yaml, the source of truth) on the test API server: applied with
// server-side apply through @kubernetes/client-node, then awaited until the API server serves them.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiException, ApiextensionsV1Api, CustomObjectsApi, KubernetesObjectApi, loadAllYaml, PatchStrategy, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';

export const crdDir = fileURLToPath(new URL('../../../crds/', import.meta.url));
export const fieldManager = 'mandate-test-harness';

export interface CrdResource {
  /** The CRD's name, `<plural>.<group>`. */
  readonly name: string;
  readonly group: string;
  /** The storage version. */
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/** The CustomResourceDefinitions in `dir` (every document of kind CustomResourceDefinition in its *.yaml files). */
export async function loadCrds(dir: string = crdDir): Promise<V1CustomResourceDefinition[]> {
  const files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort();
  const crds: V1CustomResourceDefinition[] = [];
  for (const file of files) {
    // loadAllYaml turns `x-kubernetes-validations` and friends into the client's model fields; the
    // client serializes them back on the way out. Plain YAML objects would lose them silently.
    for (const doc of loadAllYaml(await readFile(join(dir, file), 'utf8')) as unknown[]) {
      const obj = doc as Partial<V1CustomResourceDefinition> | null;
      if (obj?.kind === 'CustomResourceDefinition' && obj.apiVersion === 'apiextensions.k8s.io/v1') crds.push(obj as V1CustomResourceDefinition);
    }
  }
  if (crds.length === 0) throw new Error(`no CustomResourceDefinition in ${dir}`);
  return crds;
}

export function crdResource(crd: V1CustomResourceDefinition): CrdResource {
  const storage = crd.spec.versions.find((v) => v.storage) ?? crd.spec.versions[0];
  if (!storage || !crd.metadata?.name) throw new Error(`CRD ${crd.metadata?.name ?? '(unnamed)'} has no name or versions`);
  return { name: crd.metadata.name, group: crd.spec.group, version: storage.name, plural: crd.spec.names.plural, kind: crd.spec.names.kind, namespaced: crd.spec.scope === 'Namespaced' };
}

/** The custom resources that the repository's CRDs define (for cleanup and tests). */
export async function crdResources(dir: string = crdDir): Promise<CrdResource[]> {
  return (await loadCrds(dir)).map(crdResource);
}

function conditionTrue(crd: V1CustomResourceDefinition, type: string): boolean {
  return crd.status?.conditions?.some((c) => c.type === type && c.status === 'True') ?? false;
}

/**
 * Resolves once the API server serves lists of the resource. For a moment after a CRD becomes
 * Established, and after every API server start, the resource's watch cache is still filling and
 * lists answer 429 "storage is (re)initializing" (client-go retries that on its own; client-node
 * does not).
 */
export async function waitForCustomResource(kc: KubeConfig, r: CrdResource, timeoutMs = 30_000): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await custom.listClusterCustomObject({ group: r.group, version: r.version, plural: r.plural, limit: 1 });
      break;
    } catch (err) {
      const retriable = err instanceof ApiException && (err.code === 429 || err.code === 503 || err.code === 404);
      if (!retriable || Date.now() >= deadline) throw err;
    }
    await sleep(100);
  }
  // The first write of a custom resource after an API server start waits about 2 s in
  // ResourceQuota admission while it sets up an evaluator. A dry-run create (refused by the
  // schema, or accepted and not stored) pays that here, not inside a test that measures latency.
  if (r.namespaced) {
    await custom
      .createNamespacedCustomObject({ group: r.group, version: r.version, namespace: 'default', plural: r.plural, dryRun: 'All', body: { apiVersion: `${r.group}/${r.version}`, kind: r.kind, metadata: { name: 'mandate-harness-warmup' } } })
      .catch(() => undefined);
  }
}

/**
 * Applies every CRD in crds/ (server-side apply, so re-applying an edited file updates it) and
 * resolves once each is Established and its resources can be listed. A rejected CRD fails with
 * the API server's error.
 */
export async function applyCrds(kc: KubeConfig, options: { dir?: string; timeoutMs?: number } = {}): Promise<CrdResource[]> {
  const crds = await loadCrds(options.dir);
  const objects = KubernetesObjectApi.makeApiClient(kc);
  for (const crd of crds) {
    await objects.patch(crd, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
  }
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const resources = crds.map(crdResource);
  for (const r of resources) {
    for (;;) {
      const served = await api.readCustomResourceDefinition({ name: r.name });
      if (conditionTrue(served, 'Established')) break;
      if (Date.now() >= deadline) {
        throw new Error(`CRD ${r.name} not Established in time; conditions: ${JSON.stringify(served.status?.conditions ?? [])}`);
      }
      await sleep(100);
    }
    await waitForCustomResource(kc, r, Math.max(1000, deadline - Date.now()));
  }
  return resources;
}
