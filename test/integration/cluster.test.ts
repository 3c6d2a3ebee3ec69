// Mandate in a cluster, end to end: two real `mandate serve` replicas (the CLI, as child
// processes) against a real kube-apiserver, each running as a ServiceAccount bound to exactly the
// RBAC the chart ships. An agent pod's bound ServiceAccount token buys an SVID from the identity
// service; with it, Envoy-protocol Checks go to both replicas; policy edits and the kill switch
// reach the decision of every replica within 1 s (measured and printed); the leader writes
// status and trust bundles; when the leader dies, the standby takes over the Lease.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { applyChartRbac } from '../../controller/src/reconcile/rbac.ts';
import { authorizationClient, httpCheckRequest, type CheckClient } from '../harness/envoy-client.ts';
import { mainTs, startServer, type Server } from '../harness/mandate.ts';
import { applyCrds, cleanupNamespace, countRealApiserverTests, createNamespace, startControlPlane, uniqueNamespace, type ControlPlane } from '../harness/kube/index.ts';
import { createAgentPod, newCsr, podToken, postJson } from '../harness/kube/workload.ts';

const GROUP = { group: 'mandate.dev', version: 'v1alpha1' };
const TOKEN_VALUE = 'cluster-test-credential';

interface Res { status?: { code?: number }; ok_response?: { headers?: { header: { key: string; value: string } }[] }; denied_response?: { body?: string } }
const allowed = (r: Res) => (r.status?.code ?? 0) === 0 && r.ok_response !== undefined;
const reason = (r: Res) => (JSON.parse(r.denied_response?.body ?? '{}') as { reason?: string }).reason;

/** Polls `probe` until it holds; returns how long that took. */
async function within(ms: number, what: string, probe: () => Promise<boolean>): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - start;
    if (performance.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('mandate serve in a cluster', { timeout: 10 * 60_000 }, () => {
  countRealApiserverTests('cluster.test.ts');
  let cp: ControlPlane;
  let admin: KubeConfig;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let work: string;
  const mandateNs = uniqueNamespace('mandate');
  const agentsNs = uniqueNamespace('agents');
  const replicas: Record<'a' | 'b', Server | undefined> = { a: undefined, b: undefined };
  const clients: CheckClient[] = [];
  let svid: { ca: string; cert: string; key: string };

  const policy = (rules: unknown[]) => ({
    apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentPolicy', metadata: { name: 'worker', namespace: agentsNs },
    spec: { targets: { identities: ['worker'] }, rules },
  });
  const check = (client: CheckClient, path: string) => client.check(httpCheckRequest({ method: 'GET', host: 'api.cluster.test', path })) as Promise<Res>;

  before(async () => {
    cp = await startControlPlane();
    admin = cp.adminKubeConfig();
    core = admin.makeApiClient(CoreV1Api);
    custom = admin.makeApiClient(CustomObjectsApi);
    await applyCrds(admin);
    await createNamespace(admin, mandateNs);
    await createNamespace(admin, agentsNs);
    await core.createNamespacedServiceAccount({ namespace: mandateNs, body: { metadata: { name: 'mandate' } } });
    await applyChartRbac(admin.makeApiClient(RbacAuthorizationV1Api), { namespace: mandateNs, serviceAccount: 'mandate', credentials: { clusterWide: true } });
    const kubeconfig = await cp.serviceAccountKubeconfig(mandateNs, 'mandate', { expirationSeconds: 3600 });

    // The agent's namespace: a tool with a credential, an identity, a policy, a pod.
    await core.createNamespacedSecret({ namespace: agentsNs, body: { metadata: { name: 'api-key' }, stringData: { key: TOKEN_VALUE } } });
    await core.createNamespacedServiceAccount({ namespace: agentsNs, body: { metadata: { name: 'worker' } } });
    const create = (plural: string, body: object) => custom.createNamespacedCustomObject({ ...GROUP, namespace: agentsNs, plural, body });
    await create('agenttools', {
      apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentTool', metadata: { name: 'api', namespace: agentsNs },
      spec: { hosts: ['api.cluster.test'], credential: { secretRef: { name: 'api-key', key: 'key' } }, actions: [{ name: 'api.items.get', http: { method: 'GET', path: '/items/{id}' } }, { name: 'api.admin.get', http: { method: 'GET', path: '/admin' } }] },
    });
    await create('agentidentities', { apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentIdentity', metadata: { name: 'worker', namespace: agentsNs }, spec: { owner: 'team@example.com', serviceAccount: 'worker' } });
    await create('agentpolicies', policy([{ name: 'read', effect: 'Allow', actions: ['api.items.get'] }]));

    work = await mkdtemp(join(tmpdir(), 'mandate-cluster-'));
    const start = async (name: 'a' | 'b') => {
      const config = join(work, `${name}.yaml`);
      await writeFile(config, stringify({
        dataDir: join(work, name),
        authz: { listen: '127.0.0.1:0' },
        http: { listen: '127.0.0.1:0' },
        identityService: { listen: '127.0.0.1:0', jwtIssuer: 'https://mandate.cluster.test' },
        cluster: { kubeconfig, namespace: mandateNs, podName: `replica-${name}`, lease: { name: 'mandate-leader', durationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 1 } },
        audit: { stdout: false },
      }));
      replicas[name] = await startServer([process.execPath, mainTs, 'serve', '--config', config], { timeoutMs: 120_000 });
    };
    await start('a');
    await start('b');

    // The trust bundle the leader publishes into the agents' namespace verifies Mandate's servers.
    let bundle = '';
    await within(20_000, 'trust bundle ConfigMap', async () => {
      bundle = (await core.readNamespacedConfigMap({ name: 'mandate-trust-bundle', namespace: agentsNs }).catch(() => undefined))?.data?.['bundle.pem'] ?? '';
      return bundle.includes('BEGIN CERTIFICATE');
    });
    const pod = await createAgentPod(core, agentsNs, 'worker-0', 'worker');
    const { csrPem, keyPem } = await newCsr();
    const reply = await postJson(replicas.a!.identityPort!, '/v1/svid', { token: await podToken(core, pod), body: { csr: csrPem }, ca: bundle, servername: `mandate.${mandateNs}.svc` });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.spiffeId, `spiffe://cluster.local/ns/${agentsNs}/agent/worker`);
    svid = { ca: bundle, cert: String(reply.body.certificate), key: keyPem };
    for (const r of [replicas.a!, replicas.b!]) clients.push(authorizationClient(r.authzPort, svid));
  });

  after(async () => {
    for (const c of clients) c.close();
    await replicas.a?.stop();
    await replicas.b?.stop();
    if (admin) {
      await cleanupNamespace(admin, agentsNs).catch(() => undefined);
      await cleanupNamespace(admin, mandateNs).catch(() => undefined);
    }
    await cp?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('an SVID from the identity service is accepted by every replica, which injects the credential', async () => {
    for (const client of clients) {
      await within(10_000, 'first sync on the replica', async () => allowed(await check(client, '/items/1')));
      const res = await check(client, '/items/1');
      assert.ok(res.ok_response?.headers?.some((h) => h.header.key === 'authorization' && h.header.value === `Bearer ${TOKEN_VALUE}`));
    }
  });

  test('a policy change reaches the decision of every replica within 1 s', async () => {
    assert.equal(reason(await check(clients[0]!, '/admin')), 'default-deny');
    const started = performance.now();
    await custom.replaceNamespacedCustomObject({
      ...GROUP, namespace: agentsNs, plural: 'agentpolicies', name: 'worker',
      body: { ...policy([{ name: 'read', effect: 'Allow', actions: ['api.items.get', 'api.admin.get'] }]), metadata: { name: 'worker', namespace: agentsNs, resourceVersion: await rv('agentpolicies', 'worker') } },
    });
    const times = await Promise.all(clients.map((c) => within(1000, 'policy change', async () => allowed(await check(c, '/admin'))).then(() => performance.now() - started)));
    console.log(`policy-change-propagation-ms: ${times.map((t) => t.toFixed(0)).join(', ')}`);
  });

  test('the kill switch reaches the decision of every replica within 1 s', async () => {
    const started = performance.now();
    await custom.patchNamespacedCustomObject({ ...GROUP, namespace: agentsNs, plural: 'agentidentities', name: 'worker', body: [{ op: 'add', path: '/spec/suspended', value: true }] });
    const times = await Promise.all(clients.map((c) => within(1000, 'kill switch', async () => reason(await check(c, '/items/1')) === 'suspended').then(() => performance.now() - started)));
    console.log(`kill-switch-propagation-ms: ${times.map((t) => t.toFixed(0)).join(', ')}`);
    await custom.patchNamespacedCustomObject({ ...GROUP, namespace: agentsNs, plural: 'agentidentities', name: 'worker', body: [{ op: 'replace', path: '/spec/suspended', value: false }] });
    await within(1000, 'lifting the kill switch', async () => allowed(await check(clients[0]!, '/items/1')));
  });

  test('the leader writes status: SPIFFE ID and Ready condition on the identity', async () => {
    await within(15_000, 'identity status', async () => {
      const obj = (await custom.getNamespacedCustomObject({ ...GROUP, namespace: agentsNs, plural: 'agentidentities', name: 'worker' })) as { status?: { spiffeID?: string; conditions?: { type: string; status: string }[] } };
      return obj.status?.spiffeID === `spiffe://cluster.local/ns/${agentsNs}/agent/worker` && obj.status.conditions?.some((c) => c.type === 'Ready') === true;
    });
  });

  test('when the leader dies, the standby takes the Lease within its duration and keeps serving', async () => {
    const leases = admin.makeApiClient(CoordinationV1Api);
    const holder = async () => (await leases.readNamespacedLease({ name: 'mandate-leader', namespace: mandateNs })).spec?.holderIdentity ?? '';
    await within(15_000, 'a leader', async () => (await holder()).startsWith('replica-'));
    const leader = (await holder()) === 'replica-a' ? 'a' : 'b';
    const standby = leader === 'a' ? 'b' : 'a';
    const killed = performance.now();
    await replicas[leader]!.stop('SIGKILL'); // no chance to release the Lease
    replicas[leader] = undefined;
    const took = await within(4000 + 3000, 'takeover', async () => (await holder()) === `replica-${standby}`);
    console.log(`leader-takeover-ms: ${took.toFixed(0)} (lease duration 4000 ms; measured from the kill)`);
    assert.ok(performance.now() - killed < 7000);
    assert.ok(allowed(await check(clients[standby === 'a' ? 0 : 1]!, '/items/1')));
  });

  async function rv(plural: string, name: string): Promise<string> {
    const obj = (await custom.getNamespacedCustomObject({ ...GROUP, namespace: agentsNs, plural, name })) as { metadata?: { resourceVersion?: string } };
    return obj.metadata?.resourceVersion ?? '';
  }
});
