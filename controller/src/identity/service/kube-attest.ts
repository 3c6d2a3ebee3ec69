// The attestation ports against the real API server: a TokenReview (RBAC: create tokenreviews)
// and a GET of the pod (RBAC: get pods), over a keep-alive pool (kube-http.ts). A pod GET instead
// of an informer cache: issuance is rare (once per pod per half certificate lifetime), and a GET
// cannot be stale about a deleted or replaced pod. API failures are NOT_READY (503: retry), never
// a refusal the agent would take as final.
import type { KubeConfig, V1Pod, V1TokenReview } from '@kubernetes/client-node';
import { MandateError } from '../../errors.ts';
import { kubeReason, kubeStatus } from '../cluster/kube-errors.ts';
import type { AttestationPorts, PodFacts, TokenReviewStatus } from './attest.ts';
import { kubeJsonClient, type KubeJsonClient } from './kube-http.ts';

function unavailable(what: string, err: unknown, rbac: string): MandateError {
  const hint = kubeStatus(err) === 403 ? ` (the controller's ServiceAccount needs ${rbac})` : '';
  // The reason is the API server's Status message; the token is never part of it.
  return new MandateError('NOT_READY', `${what}: ${kubeReason(err)}${hint}`, {}, { cause: err });
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** The facts attestation needs from a pod as the API server returns it (JSON). */
export function podFacts(pod: V1Pod): PodFacts {
  const deletion: unknown = pod.metadata?.deletionTimestamp;
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    // The API server defaults an unset serviceAccountName to "default" on create.
    serviceAccountName: pod.spec?.serviceAccountName ?? 'default',
    labels: stringMap(pod.metadata?.labels),
    ...(pod.status?.phase ? { phase: pod.status.phase } : {}),
    // JSON gives a string; client-node's typed model a Date.
    ...(deletion instanceof Date ? { deletionTimestamp: deletion.toISOString() } : typeof deletion === 'string' && deletion !== '' ? { deletionTimestamp: deletion } : {}),
  };
}

export interface KubeAttestationPorts extends AttestationPorts {
  /** Closes the connection pool. */
  close(): void;
}

export function kubeAttestationPorts(kc: KubeConfig, client: KubeJsonClient = kubeJsonClient(kc)): KubeAttestationPorts {
  return {
    async reviewToken(token: string, audience: string): Promise<TokenReviewStatus> {
      let review: V1TokenReview;
      try {
        review = (await client.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences: [audience] },
        })) as V1TokenReview;
      } catch (err) {
        throw unavailable('TokenReview failed', err, 'create on tokenreviews.authentication.k8s.io');
      }
      return review.status ?? {};
    },
    async getPod(namespace: string, name: string): Promise<PodFacts | undefined> {
      try {
        return podFacts((await client.call('GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`)) as V1Pod);
      } catch (err) {
        if (kubeStatus(err) === 404) return undefined;
        throw unavailable(`reading pod ${namespace}/${name} failed`, err, 'get on pods');
      }
    },
    close() {
      client.close();
    },
  };
}
