// Reads Mandate's custom resources and writes their status subresource with server-side apply.
//
// Why server-side apply (field manager `mandate`, forced) and not a merge patch: conditions are a
// list-map keyed by type in the CRDs, so an apply that names only Ready and Compiled leaves other
// writers' conditions alone, while a JSON merge patch replaces the whole list. Fields the
// reconciler applied before and now omits (a policy's errors, once fixed) are removed by the API
// server because this manager owned them. metadata.resourceVersion in the apply makes it a
// conditional write: a status computed from a stale cache fails with 409 instead of landing.
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';
import { isNotFound, kubeError } from './kube-errors.ts';
import type { ManagedKind, ManagedObject, OwnedStatus } from './status.ts';

export const MANDATE_GROUP = 'mandate.dev';
export const MANDATE_VERSION = 'v1alpha1';
export const FIELD_MANAGER = 'mandate';

export const pluralOf: Readonly<Record<ManagedKind, string>> = {
  AgentIdentity: 'agentidentities',
  AgentPolicy: 'agentpolicies',
  AgentTool: 'agenttools',
};

export interface ObjectRef {
  readonly kind: ManagedKind;
  readonly namespace: string;
  readonly name: string;
}

export interface StatusApi {
  /** The live object, or undefined when it does not exist. */
  get(ref: ObjectRef): Promise<ManagedObject | undefined>;
  /**
   * Applies the owned status fields if the object is still at `resourceVersion`. Resolves to the
   * new resourceVersion, or undefined when the object is gone. KUBE_CONFLICT when it changed.
   */
  applyStatus(ref: ObjectRef, resourceVersion: string, status: OwnedStatus): Promise<string | undefined>;
}

function resourceVersionOf(obj: unknown): string | undefined {
  const rv = (obj as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
}

export function kubeStatusApi(api: CustomObjectsApi): StatusApi {
  const applyOptions = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
  const label = (ref: ObjectRef): string => `${ref.kind} ${ref.namespace}/${ref.name}`;
  return {
    async get(ref) {
      try {
        const obj: unknown = await api.getNamespacedCustomObject({
          group: MANDATE_GROUP,
          version: MANDATE_VERSION,
          namespace: ref.namespace,
          plural: pluralOf[ref.kind],
          name: ref.name,
        });
        return obj as ManagedObject;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw kubeError(err, `read ${label(ref)}`);
      }
    },
    async applyStatus(ref, resourceVersion, status) {
      const body = {
        apiVersion: `${MANDATE_GROUP}/${MANDATE_VERSION}`,
        kind: ref.kind,
        metadata: { name: ref.name, namespace: ref.namespace, resourceVersion },
        status,
      };
      try {
        const result: unknown = await api.patchNamespacedCustomObjectStatus(
          {
            group: MANDATE_GROUP,
            version: MANDATE_VERSION,
            namespace: ref.namespace,
            plural: pluralOf[ref.kind],
            name: ref.name,
            body,
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          applyOptions,
        );
        return resourceVersionOf(result) ?? resourceVersion;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw kubeError(err, `apply status of ${label(ref)}`);
      }
    },
  };
}
