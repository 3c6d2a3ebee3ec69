// The RBAC the chart ships, read from the chart's own files, so tests (and `mandate` tooling)
// grant exactly what a Helm install grants: a permission missing from the chart fails the
// integration tests instead of being papered over by a test-only role.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { RbacAuthorizationV1Api, V1PolicyRule } from '@kubernetes/client-node';
import { MandateError } from '../errors.ts';
import { kubeStatus, toKubeError } from '../kube/client.ts';

export interface RbacRule {
  readonly apiGroups: readonly string[];
  readonly resources: readonly string[];
  readonly verbs: readonly string[];
  readonly resourceNames?: readonly string[];
}

export interface RbacRole {
  readonly apiVersion: 'rbac.authorization.k8s.io/v1';
  readonly kind: 'ClusterRole' | 'Role';
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Readonly<Record<string, string>> };
  readonly rules: readonly RbacRule[];
}

export interface ChartRbac {
  readonly clusterRoles: readonly RbacRole[];
  readonly roles: readonly RbacRole[];
}

export const defaultChartDir = fileURLToPath(new URL('../../../charts/mandate', import.meta.url));
const RBAC_FILES = ['templates/clusterrole.yaml', 'templates/role.yaml'];
const RELEASE_NAMESPACE = /\{\{-?\s*\.Release\.Namespace\s*-?\}\}/g;

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new MandateError('CONFIG_INVALID', `${where} must be a list of strings`);
  }
  return value;
}

function toRole(doc: unknown, where: string): RbacRole {
  const d = doc as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown; namespace?: unknown; labels?: unknown }; rules?: unknown };
  if (d.apiVersion !== 'rbac.authorization.k8s.io/v1' || (d.kind !== 'ClusterRole' && d.kind !== 'Role')) {
    throw new MandateError('CONFIG_INVALID', `${where}: expected an rbac.authorization.k8s.io/v1 ClusterRole or Role`);
  }
  const name = d.metadata?.name;
  if (typeof name !== 'string' || name === '') throw new MandateError('CONFIG_INVALID', `${where}: metadata.name is required`);
  const namespace = d.metadata?.namespace;
  if (d.kind === 'Role' && typeof namespace !== 'string') throw new MandateError('CONFIG_INVALID', `${where}: a Role needs metadata.namespace`);
  if (!Array.isArray(d.rules)) throw new MandateError('CONFIG_INVALID', `${where}: rules must be a list`);
  const rules = d.rules.map((r: unknown, i): RbacRule => {
    const rule = r as Record<string, unknown>;
    const at = `${where} rules[${i}]`;
    return {
      apiGroups: stringList(rule.apiGroups, `${at}.apiGroups`),
      resources: stringList(rule.resources, `${at}.resources`),
      verbs: stringList(rule.verbs, `${at}.verbs`),
      ...(rule.resourceNames !== undefined ? { resourceNames: stringList(rule.resourceNames, `${at}.resourceNames`) } : {}),
    };
  });
  const labels = d.metadata?.labels as Record<string, string> | undefined;
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: d.kind,
    metadata: { name, ...(typeof namespace === 'string' ? { namespace } : {}), ...(labels ? { labels } : {}) },
    rules,
  };
}

/**
 * The ClusterRoles and Roles in the chart's RBAC templates, rendered for a release in
 * `namespace`. Any template expression other than .Release.Namespace is refused, so the files
 * stay something these tests can render faithfully.
 */
export function chartRbac(namespace: string, chartDir: string = defaultChartDir): ChartRbac {
  const clusterRoles: RbacRole[] = [];
  const roles: RbacRole[] = [];
  for (const file of RBAC_FILES) {
    const path = `${chartDir}/${file}`;
    const rendered = readFileSync(path, 'utf8').replace(RELEASE_NAMESPACE, namespace);
    if (rendered.includes('{{')) throw new MandateError('CONFIG_INVALID', `${path}: only {{ .Release.Namespace }} can be rendered here`);
    for (const [i, doc] of parseAllDocuments(rendered).entries()) {
      if (doc.errors.length > 0) throw new MandateError('CONFIG_INVALID', `${path} document ${i + 1}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) continue;
      const role = toRole(value, `${path} document ${i + 1}`);
      (role.kind === 'ClusterRole' ? clusterRoles : roles).push(role);
    }
  }
  return { clusterRoles, roles };
}

/** Where the credentials ClusterRole is bound: cluster-wide, or per agent namespace (least privilege). */
export type CredentialScope = { readonly clusterWide: true } | { readonly namespaces: readonly string[] };

export interface ApplyChartRbacOptions {
  /** The release namespace: Mandate's own (Lease, key Secrets). */
  readonly namespace: string;
  /** The ServiceAccount the controller runs as, in `namespace`. */
  readonly serviceAccount: string;
  readonly credentials: CredentialScope;
  readonly chartDir?: string;
}

const CONTROLLER_ROLE = 'mandate-controller';
const CREDENTIALS_ROLE = 'mandate-credentials';

async function createOrReplace(create: () => Promise<unknown>, read: () => Promise<{ metadata?: { resourceVersion?: string } }>, replace: (rv: string) => Promise<unknown>): Promise<void> {
  try {
    await create();
  } catch (err) {
    if (kubeStatus(err) !== 409) throw toKubeError(err, 'create RBAC object');
    const rv = (await read()).metadata?.resourceVersion ?? '';
    await replace(rv);
  }
}

/**
 * Creates (or replaces) the chart's ClusterRoles and Role and binds them to the controller's
 * ServiceAccount the way a Helm install does: what the integration tests run the controller with.
 */
export async function applyChartRbac(api: RbacAuthorizationV1Api, options: ApplyChartRbacOptions): Promise<ChartRbac> {
  const rbac = chartRbac(options.namespace, options.chartDir);
  const subject = { kind: 'ServiceAccount', name: options.serviceAccount, namespace: options.namespace };
  const roleRef = (kind: 'ClusterRole' | 'Role', name: string) => ({ apiGroup: 'rbac.authorization.k8s.io', kind, name });
  const rules = (role: RbacRole): V1PolicyRule[] =>
    role.rules.map((r) => ({ apiGroups: [...r.apiGroups], resources: [...r.resources], verbs: [...r.verbs], ...(r.resourceNames ? { resourceNames: [...r.resourceNames] } : {}) }));

  for (const role of rbac.clusterRoles) {
    const name = role.metadata.name;
    const body = (resourceVersion?: string) => ({ metadata: { name, ...(role.metadata.labels ? { labels: { ...role.metadata.labels } } : {}), ...(resourceVersion ? { resourceVersion } : {}) }, rules: rules(role) });
    await createOrReplace(() => api.createClusterRole({ body: body() }), () => api.readClusterRole({ name }), (rv) => api.replaceClusterRole({ name, body: body(rv) }));
  }
  for (const role of rbac.roles) {
    const name = role.metadata.name;
    const namespace = role.metadata.namespace ?? options.namespace;
    const body = (resourceVersion?: string) => ({ metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) }, rules: rules(role) });
    await createOrReplace(
      () => api.createNamespacedRole({ namespace, body: body() }),
      () => api.readNamespacedRole({ name, namespace }),
      (rv) => api.replaceNamespacedRole({ name, namespace, body: body(rv) }),
    );
    const binding = (resourceVersion?: string) => ({ metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) }, roleRef: roleRef('Role', name), subjects: [subject] });
    await createOrReplace(
      () => api.createNamespacedRoleBinding({ namespace, body: binding() }),
      () => api.readNamespacedRoleBinding({ name, namespace }),
      (rv) => api.replaceNamespacedRoleBinding({ name, namespace, body: binding(rv) }),
    );
  }
  const clusterBindings = [CONTROLLER_ROLE, ...('clusterWide' in options.credentials ? [CREDENTIALS_ROLE] : [])];
  for (const name of clusterBindings) {
    const body = (resourceVersion?: string) => ({ metadata: { name: `${name}-${options.namespace}`, ...(resourceVersion ? { resourceVersion } : {}) }, roleRef: roleRef('ClusterRole', name), subjects: [subject] });
    await createOrReplace(
      () => api.createClusterRoleBinding({ body: body() }),
      () => api.readClusterRoleBinding({ name: `${name}-${options.namespace}` }),
      (rv) => api.replaceClusterRoleBinding({ name: `${name}-${options.namespace}`, body: body(rv) }),
    );
  }
  if ('namespaces' in options.credentials) {
    for (const namespace of options.credentials.namespaces) await bindCredentials(api, namespace, options);
  }
  return rbac;
}

/** Lets the controller read the Secrets (tool credentials) of one agent namespace. */
export async function bindCredentials(api: RbacAuthorizationV1Api, namespace: string, options: Pick<ApplyChartRbacOptions, 'namespace' | 'serviceAccount'>): Promise<void> {
  const name = CREDENTIALS_ROLE;
  const body = (resourceVersion?: string) => ({
    metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    subjects: [{ kind: 'ServiceAccount', name: options.serviceAccount, namespace: options.namespace }],
  });
  await createOrReplace(
    () => api.createNamespacedRoleBinding({ namespace, body: body() }),
    () => api.readNamespacedRoleBinding({ name, namespace }),
    (rv) => api.replaceNamespacedRoleBinding({ name, namespace, body: body(rv) }),
  );
}
