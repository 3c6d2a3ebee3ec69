// The Kubernetes test harness: a real etcd and kube-apiserver per test file, and helpers for
// namespaces and CRDs. See control-plane.ts for what runs and build.ts for where the binaries come from.
export { startControlPlane, serviceAccountIssuer, serviceClusterIpRange, adminGroup, adminUser, type ControlPlane, type ControlPlaneOptions, type KubeUser } from './control-plane.ts';
export { ensureControlPlaneBinaries, ensureBinary, cachedBinaryPath, kubeVersion, etcdVersion, KubeBinaryError, type ControlPlaneBinaries, type ResolvedBinary } from './build.ts';
export { applyCrds, loadCrds, crdResources, crdResource, crdDir, waitForCustomResource, type CrdResource } from './crds.ts';
export { uniqueNamespace, createNamespace, cleanupNamespace, isNotFound, retryTooManyRequests } from './namespaces.ts';
export { loadKubeConfig, writeKubeconfig } from './kubeconfig.ts';
export { countRealApiserverTests } from './count.ts';
export { apiError } from './api-error.ts';
