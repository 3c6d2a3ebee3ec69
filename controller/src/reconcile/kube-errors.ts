// Kubernetes failures for the reconciler: the shared translation (kube/client.ts), plus one
// distinction it needs that others do not: 409 Conflict is retriable here. A conditional write
// (resourceVersion precondition, a Lease update, a create racing another replica) that conflicts
// must be tried again with fresh state, not dropped as a refusal.
import { MandateError } from '../errors.ts';
import { kubeStatus, toKubeError } from '../kube/client.ts';

export function kubeError(err: unknown, operation: string): MandateError {
  const e = toKubeError(err, operation);
  if (e.details.status !== 409 || e.code === 'KUBE_CONFLICT') return e;
  return new MandateError('KUBE_CONFLICT', e.message, { ...e.details }, { cause: err });
}

export const isNotFound = (err: unknown): boolean => kubeStatus(err) === 404;
export const isConflict = (err: unknown): boolean => kubeStatus(err) === 409;
