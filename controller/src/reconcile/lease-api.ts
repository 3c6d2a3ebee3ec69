// The LeaseApi of leader.ts on a real coordination.k8s.io/v1 Lease. MicroTime fields go out as
// V1MicroTime (six fractional digits, as the API server requires) and come back as whatever the
// client's deserialiser produced (a string today); both are normalised to strings here.
import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { MandateError } from '../errors.ts';
import { isNotFound, kubeError } from './kube-errors.ts';
import { microTime, type LeaseApi, type LeaseRecord, type LeaseSpecFields } from './leader.ts';

function timeString(value: unknown): string | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : microTime(value);
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function toMicroTime(value: string | undefined): V1MicroTime | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? new V1MicroTime(ms) : undefined;
}

function toRecord(lease: V1Lease, what: string): LeaseRecord {
  const resourceVersion = lease.metadata?.resourceVersion;
  if (!resourceVersion) throw new MandateError('KUBE_UNAVAILABLE', `${what}: the response has no resourceVersion`);
  const s = lease.spec ?? {};
  const spec: LeaseSpecFields = {
    ...(s.holderIdentity !== undefined ? { holderIdentity: s.holderIdentity } : {}),
    ...(s.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: s.leaseDurationSeconds } : {}),
    ...(timeString(s.acquireTime) !== undefined ? { acquireTime: timeString(s.acquireTime) } : {}),
    ...(timeString(s.renewTime) !== undefined ? { renewTime: timeString(s.renewTime) } : {}),
    ...(s.leaseTransitions !== undefined ? { leaseTransitions: s.leaseTransitions } : {}),
    ...(s.preferredHolder !== undefined ? { preferredHolder: s.preferredHolder } : {}),
    ...(s.strategy !== undefined ? { strategy: s.strategy } : {}),
  };
  return { resourceVersion, spec };
}

function toLease(namespace: string, name: string, spec: LeaseSpecFields, resourceVersion?: string): V1Lease {
  const acquireTime = toMicroTime(spec.acquireTime);
  const renewTime = toMicroTime(spec.renewTime);
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(resourceVersion !== undefined ? { resourceVersion } : {}) },
    spec: {
      ...(spec.holderIdentity !== undefined ? { holderIdentity: spec.holderIdentity } : {}),
      ...(spec.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: spec.leaseDurationSeconds } : {}),
      ...(acquireTime ? { acquireTime } : {}),
      ...(renewTime ? { renewTime } : {}),
      ...(spec.leaseTransitions !== undefined ? { leaseTransitions: spec.leaseTransitions } : {}),
      ...(spec.preferredHolder !== undefined ? { preferredHolder: spec.preferredHolder } : {}),
      ...(spec.strategy !== undefined ? { strategy: spec.strategy } : {}),
    },
  };
}

export function kubeLeaseApi(api: CoordinationV1Api, namespace: string, name: string): LeaseApi {
  const label = `Lease ${namespace}/${name}`;
  return {
    async get() {
      try {
        return toRecord(await api.readNamespacedLease({ name, namespace }), `read ${label}`);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw kubeError(err, `read ${label}`);
      }
    },
    async create(spec) {
      try {
        return toRecord(await api.createNamespacedLease({ namespace, body: toLease(namespace, name, spec) }), `create ${label}`);
      } catch (err) {
        throw kubeError(err, `create ${label}`);
      }
    },
    async update(resourceVersion, spec) {
      try {
        return toRecord(await api.replaceNamespacedLease({ name, namespace, body: toLease(namespace, name, spec, resourceVersion) }), `update ${label}`);
      } catch (err) {
        throw kubeError(err, `update ${label}`);
      }
    },
  };
}
