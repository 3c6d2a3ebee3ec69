// The chart's RBAC, checked rule by rule: least privilege (no wildcards, writes only where the
// controller writes) and complete (every call the controller makes is granted).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaults } from '../../controller/src/config.ts';
import { isMandateError } from '../../controller/src/errors.ts';
import { CA_SECRET_NAME } from '../../controller/src/identity/cluster/ca-secret.ts';
import { JWT_KEYS_SECRET_NAME } from '../../controller/src/identity/cluster/jwt-keyset.ts';
import { parseKey, parseObjectLabel } from '../../controller/src/reconcile/keys.ts';
import { chartRbac, type RbacRole } from '../../controller/src/reconcile/rbac.ts';
import { TRUST_BUNDLE_NAME, planTrustBundle, trustBundleLabels } from '../../controller/src/reconcile/trust-bundle.ts';

/** Whether `role` allows `verb` on `group/resource` (optionally a named object), as RBAC evaluates it. */
function allows(role: RbacRole, group: string, resource: string, verb: string, name?: string): boolean {
  return role.rules.some(
    (r) =>
      r.apiGroups.includes(group) &&
      r.resources.includes(resource) &&
      r.verbs.includes(verb) &&
      (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))),
  );
}

describe('chart RBAC', () => {
  const rbac = chartRbac('mandate-system');
  const controller = rbac.clusterRoles.find((r) => r.metadata.name === 'mandate-controller');
  const credentials = rbac.clusterRoles.find((r) => r.metadata.name === 'mandate-credentials');
  const own = rbac.roles.find((r) => r.metadata.name === 'mandate-controller');

  test('parses the chart templates, rendering the release namespace', () => {
    assert.ok(controller && credentials && own);
    assert.equal(own.metadata.namespace, 'mandate-system');
  });

  test('grants every call the controller makes, by the names the code uses', () => {
    assert.ok(controller && own && credentials);
    for (const plural of ['agentidentities', 'agentpolicies', 'agenttools']) {
      for (const verb of ['get', 'list', 'watch']) assert.ok(allows(controller, 'mandate.dev', plural, verb), `${verb} ${plural}`);
      assert.ok(allows(controller, 'mandate.dev', `${plural}/status`, 'patch'), `patch ${plural}/status`);
    }
    assert.ok(allows(controller, '', 'configmaps', 'create'));
    for (const verb of ['get', 'list', 'update', 'delete']) assert.ok(allows(controller, '', 'configmaps', verb, TRUST_BUNDLE_NAME), `${verb} the trust bundle`);
    assert.ok(allows(controller, 'events.k8s.io', 'events', 'create') && allows(controller, 'events.k8s.io', 'events', 'patch'));
    assert.ok(allows(controller, 'authentication.k8s.io', 'tokenreviews', 'create'));
    // Not granted until the elevation approval webhook exists.
    assert.ok(!allows(controller, 'authorization.k8s.io', 'subjectaccessreviews', 'create'));
    assert.ok(allows(controller, '', 'pods', 'get'));
    for (const verb of ['list', 'watch']) assert.ok(allows(credentials, '', 'secrets', verb));
    assert.ok(allows(own, 'coordination.k8s.io', 'leases', 'create'));
    for (const verb of ['get', 'update']) assert.ok(allows(own, 'coordination.k8s.io', 'leases', verb, defaults().cluster.lease.name));
    assert.ok(allows(own, '', 'secrets', 'create'));
    for (const name of [CA_SECRET_NAME, JWT_KEYS_SECRET_NAME]) for (const verb of ['get', 'list', 'watch', 'update']) assert.ok(allows(own, '', 'secrets', verb, name), `${verb} ${name}`);
  });

  test('grants nothing more: no wildcards, no spec writes, no other ConfigMaps, no Secret writes outside its namespace', () => {
    assert.ok(controller && own && credentials);
    for (const role of [controller, credentials, own]) {
      for (const rule of role.rules) {
        for (const field of [rule.apiGroups, rule.resources, rule.verbs, rule.resourceNames ?? []]) assert.ok(!field.includes('*'), `${role.metadata.name}: wildcard`);
        assert.ok(!rule.verbs.includes('escalate') && !rule.verbs.includes('bind') && !rule.verbs.includes('impersonate'));
      }
    }
    for (const plural of ['agentidentities', 'agentpolicies', 'agenttools']) {
      for (const verb of ['create', 'update', 'patch', 'delete']) assert.equal(allows(controller, 'mandate.dev', plural, verb), false, `${verb} ${plural}`);
    }
    for (const verb of ['get', 'list', 'update', 'delete']) assert.equal(allows(controller, '', 'configmaps', verb, 'kube-root-ca.crt'), false, `${verb} other ConfigMaps`);
    assert.equal(allows(controller, '', 'secrets', 'get'), false, 'Secrets are in their own ClusterRole');
    for (const verb of ['get', 'create', 'update', 'patch', 'delete']) assert.equal(allows(credentials, '', 'secrets', verb), false);
    assert.equal(allows(own, '', 'secrets', 'delete', CA_SECRET_NAME), false);
    assert.equal(allows(own, '', 'secrets', 'get', 'someone-elses-secret'), false);
    assert.equal(allows(controller, '', 'pods', 'list'), false, 'pods are read by name only');
    assert.equal(allows(own, 'coordination.k8s.io', 'leases', 'update', 'someone-elses-lease'), false);
  });

  test('refuses template expressions it cannot render faithfully', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mandate-rbac-'));
    mkdirSync(join(dir, 'templates'));
    writeFileSync(join(dir, 'templates', 'clusterrole.yaml'), 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {{ .Values.name }}\nrules: []\n');
    writeFileSync(join(dir, 'templates', 'role.yaml'), '');
    assert.throws(() => chartRbac('ns', dir), (err) => isMandateError(err, 'CONFIG_INVALID'));
  });
});

describe('keys and trust bundle plans', () => {
  test('queue keys and problem labels parse back to what they name', () => {
    assert.deepEqual(parseKey('AgentPolicy/agents/p'), { kind: 'AgentPolicy', namespace: 'agents', name: 'p' });
    assert.deepEqual(parseKey('TrustBundle/agents'), { kind: 'TrustBundle', namespace: 'agents' });
    assert.deepEqual(parseKey('Resync'), { kind: 'Resync' });
    assert.equal(parseKey('Secret/agents/x'), undefined);
    assert.equal(parseKey('AgentPolicy/agents'), undefined);
    assert.deepEqual(parseObjectLabel('AgentTool agents/github'), { kind: 'AgentTool', namespace: 'agents', name: 'github' });
    assert.equal(parseObjectLabel('Secret agents/x'), undefined);
    assert.equal(parseObjectLabel('document 3'), undefined);
  });

  test('a trust bundle plan touches only ConfigMaps Mandate manages and keeps what others added', () => {
    const ours = { namespace: 'a', name: 'mandate-trust-bundle', uid: 'u', resourceVersion: '5', labels: { ...trustBundleLabels, team: 'x' }, annotations: { note: 'y' }, data: { 'bundle.pem': 'old' } };
    assert.equal(planTrustBundle('new', undefined).kind, 'create');
    const update = planTrustBundle('new', ours);
    assert.equal(update.kind, 'update');
    if (update.kind === 'update') {
      assert.equal(update.resourceVersion, '5');
      assert.deepEqual(update.write.labels, { ...trustBundleLabels, team: 'x' });
      assert.deepEqual(update.write.annotations, { note: 'y' });
      assert.deepEqual(update.write.data, { 'bundle.pem': 'new' });
    }
    assert.equal(planTrustBundle('old', ours).kind, 'none');
    assert.deepEqual(planTrustBundle(undefined, ours), { kind: 'delete', uid: 'u', resourceVersion: '5' });
    const foreign = { ...ours, labels: {} };
    assert.equal(planTrustBundle('new', foreign).kind, 'foreign');
    assert.equal(planTrustBundle(undefined, foreign).kind, 'none');
  });
});
