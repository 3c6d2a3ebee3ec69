// The Kubernetes test harness against itself: a real etcd and kube-apiserver (built from their Go
// modules) start, enforce RBAC, issue and review ServiceAccount tokens, serve Mandate's CRDs with
// their CEL rules, and keep their data over an API server restart. Other integration tests build on
// exactly these guarantees.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type {
  ApiException} from '@kubernetes/client-node';
import {
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  VersionApi,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import type { AgentPolicy } from '../../crds/generated/types.ts';
import {
  adminGroup,
  adminUser,
  applyCrds,
  cleanupNamespace,
  countRealApiserverTests,
  crdResources,
  createNamespace,
  ensureBinary,
  ensureControlPlaneBinaries,
  isNotFound,
  KubeBinaryError,
  kubeVersion,
  loadKubeConfig,
  serviceAccountIssuer,
  startControlPlane,
  uniqueNamespace,
  writeKubeconfig,
  type ControlPlane,
  type CrdResource,
  apiError,
} from '../harness/kube/index.ts';
import { kubeWrapperGoMod, parseUpstreamGoMod, etcdWrapperGoMod } from '../harness/kube/build.ts';

const processesTs = new URL('../harness/kube/processes.ts', import.meta.url).href;


function errorMessage(err: ApiException<unknown>): string {
  const body = typeof err.body === 'string' ? err.body : JSON.stringify(err.body);
  try {
    const message = (JSON.parse(body) as { message?: unknown }).message;
    return typeof message === 'string' ? message : body;
  } catch {
    return body;
  }
}

/** Polls until `probe` stops throwing; the last failure is the error. */
async function eventually<T>(probe: () => T | Promise<T>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await sleep(100);
  }
}

/** Alive and not a zombie waiting for whoever adopted it to reap it. */
async function processAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no procfs: kill(0) is all there is
  }
}

describe('test control plane: real etcd + kube-apiserver', { timeout: 30 * 60_000 }, () => {
  countRealApiserverTests('kube-harness.test.ts');
  let cp: ControlPlane;
  let kc: KubeConfig;
  let crds: Promise<CrdResource[]> | undefined;
  const namespaces: string[] = [];
  // Tests that need the CRDs share one apply, whichever runs first.
  const withCrds = (): Promise<CrdResource[]> => (crds ??= applyCrds(kc));
  const freshNamespace = async (prefix: string): Promise<string> => {
    const ns = await createNamespace(kc, uniqueNamespace(prefix));
    namespaces.push(ns);
    return ns;
  };

  before(async () => {
    cp = await startControlPlane();
    kc = cp.adminKubeConfig();
  });

  after(async () => {
    if (!cp) return;
    try {
      for (const ns of namespaces) await cleanupNamespace(kc, ns);
    } finally {
      await cp.stop();
    }
    await assert.rejects(access(cp.dir), 'the temporary folder is removed on stop');
  });

  test('the version endpoint reports the version of the binary, the pinned one unless overridden', async () => {
    const info = await kc.makeApiClient(VersionApi).getCode();
    assert.equal(info.gitVersion, cp.version);
    if (cp.binaries.kubeApiserver.source === 'cache' || cp.binaries.kubeApiserver.source === 'built') {
      assert.equal(info.gitVersion, kubeVersion);
      assert.equal(`v${info.major}.${info.minor}`, kubeVersion.split('.').slice(0, 2).join('.'));
    }
    assert.match(cp.server, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  test('RBAC denies an unprivileged user (403), allows the admin, and follows a RoleBinding', async () => {
    const ns = await freshNamespace('rbac');
    const alice = loadKubeConfig(await cp.kubeconfigFor({ name: 'alice', groups: ['dev-team'] })).makeApiClient(CoreV1Api);
    const denied = await apiError(() => alice.listNamespacedConfigMap({ namespace: ns }));
    assert.equal(denied.code, 403);
    assert.match(errorMessage(denied), /User "alice" cannot list resource "configmaps"/);

    const admin = kc.makeApiClient(CoreV1Api);
    await admin.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'visible' }, data: { k: 'v' } } });
    assert.equal((await admin.listNamespacedConfigMap({ namespace: ns })).items.length, 1);

    // The group from the certificate's O attribute is what RBAC sees. (Not the built-in `view`:
    // it is aggregated, and no controller-manager runs to fill in its rules.)
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: 'read-configmaps' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }] } });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'dev-team-read' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-configmaps' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'dev-team' }],
      },
    });
    const list = await eventually(() => alice.listNamespacedConfigMap({ namespace: ns }));
    assert.deepEqual(list.items.map((c) => c.metadata?.name), ['visible']);
    const stillDenied = await apiError(() => alice.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'nope' } } }));
    assert.equal(stillDenied.code, 403, 'the role does not grant create');
  });

  test('admin and users are who their certificates say', async () => {
    const auth = kc.makeApiClient(AuthenticationV1Api);
    const me = await auth.createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
    assert.equal(me.status?.userInfo?.username, adminUser);
    assert.ok(me.status?.userInfo?.groups?.includes(adminGroup));
    const bob = loadKubeConfig(await cp.kubeconfigFor({ name: 'bob@example.com', groups: ['a, b', 'ops'] })).makeApiClient(AuthenticationV1Api);
    const bobReview = await bob.createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
    assert.equal(bobReview.status?.userInfo?.username, 'bob@example.com');
    assert.deepEqual(bobReview.status?.userInfo?.groups?.filter((g) => g !== 'system:authenticated').sort(), ['a, b', 'ops']);
  });

  test('a TokenRequest token with audience mandate passes a TokenReview for mandate and fails a foreign one', async () => {
    const ns = await freshNamespace('tokens');
    const core = kc.makeApiClient(CoreV1Api);
    const auth = kc.makeApiClient(AuthenticationV1Api);
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'agent' } } });
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'agent',
      namespace: ns,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['mandate'], expirationSeconds: 600 } },
    });
    const token = tr.status?.token;
    assert.ok(token);
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { iss?: string; aud?: string[] };
    assert.equal(claims.iss, serviceAccountIssuer);
    assert.deepEqual(claims.aud, ['mandate']);

    const review = (audiences: string[]) => auth.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
    const ok = await review(['mandate']);
    assert.equal(ok.status?.authenticated, true);
    assert.equal(ok.status?.user?.username, `system:serviceaccount:${ns}:agent`);
    assert.deepEqual(ok.status?.audiences, ['mandate']);
    const foreign = await review(['https://other.example']);
    assert.notEqual(foreign.status?.authenticated, true);
    assert.ok(foreign.status?.error, 'a refused review says why');

    // Without spec.audiences a review checks the API server's own audiences, as in a real cluster:
    // an attestation token is no API credential, and a reviewer that forgets the audience is caught.
    const implicit = await auth.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
    assert.notEqual(implicit.status?.authenticated, true);
    const asToken = loadKubeConfig(await writeKubeconfig(join(cp.dir, 'kubeconfigs', 'mandate-audience.kubeconfig'), { server: cp.server, caPem: cp.caPem, user: 'agent', credential: { token } }));
    const unauthorized = await apiError(() => asToken.makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace: ns }));
    assert.equal(unauthorized.code, 401);
  });

  test('a ServiceAccount kubeconfig authenticates as that ServiceAccount with only its RBAC grants', async () => {
    const ns = await freshNamespace('sa');
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'controller' } } });
    const path = await cp.serviceAccountKubeconfig(ns, 'controller');
    const saKc = loadKubeConfig(path);
    assert.equal(saKc.getContextObject(saKc.getCurrentContext())?.namespace, ns);
    const who = await saKc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
    assert.equal(who.status?.userInfo?.username, `system:serviceaccount:${ns}:controller`);
    const denied = await apiError(() => saKc.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: ns }));
    assert.equal(denied.code, 403);

    const missing = await apiError(() => cp.serviceAccountKubeconfig(ns, 'no-such-account'));
    assert.equal(missing.code, 404);
  });

  test('the CRDs in crds/ apply and become Established', async () => {
    const applied = await withCrds();
    const expected = await crdResources();
    assert.deepEqual(applied.map((r) => r.name).sort(), expected.map((r) => r.name).sort());
    assert.ok(applied.some((r) => r.kind === 'AgentPolicy'));
    const api = kc.makeApiClient(ApiextensionsV1Api);
    for (const r of applied) {
      const crd = await api.readCustomResourceDefinition({ name: r.name });
      assert.ok(crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'), `${r.name} Established`);
      assert.deepEqual(crd.status?.acceptedNames?.kind, r.kind);
    }
    // Server-side apply: applying the same files again is a no-op, not a conflict or a new generation.
    const generations = async () => Promise.all(applied.map(async (r) => (await api.readCustomResourceDefinition({ name: r.name })).metadata?.generation));
    const before = await generations();
    assert.deepEqual((await applyCrds(kc)).map((r) => r.name), applied.map((r) => r.name));
    assert.deepEqual(await generations(), before);
  });

  test('an invalid AgentPolicy is rejected by the API server with the CRD rule\'s own message', async () => {
    await withCrds();
    const ns = await freshNamespace('policy');
    const custom = kc.makeApiClient(CustomObjectsApi);
    const policy = (effect: 'Allow' | 'Deny', name: string): AgentPolicy => ({
      apiVersion: 'mandate.dev/v1alpha1',
      kind: 'AgentPolicy',
      metadata: { name },
      spec: {
        targets: { identities: ['github-agent'] },
        rules: [{ name: 'merge', effect, actions: ['github.pr.merge'], rateLimit: { requests: 5, per: '1m' } }],
      },
    });
    const target = { group: 'mandate.dev', version: 'v1alpha1', namespace: ns, plural: 'agentpolicies' };
    const rejected = await apiError(() => custom.createNamespacedCustomObject({ ...target, body: policy('Deny', 'deny-with-rate-limit') }));
    assert.equal(rejected.code, 422);
    assert.match(errorMessage(rejected), /spec\.rules\[0\]\.rateLimit: Invalid value: "object": rateLimit applies to Allow rules only/);

    // The same rule as an Allow is fine, so the refusal above is the CEL rule and nothing else.
    const created = (await custom.createNamespacedCustomObject({ ...target, body: policy('Allow', 'allow-with-rate-limit') })) as AgentPolicy;
    assert.equal(created.spec.mode, 'Enforce', 'the schema default was applied');
  });

  test('cleanupNamespace removes the namespace with its pods, custom resources with finalizers and the rest', async () => {
    await withCrds();
    const ns = await createNamespace(kc, uniqueNamespace('cleanup'));
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    // ServiceAccount admission accepts the pod because createNamespace made `default`.
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'app' }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1' }] } } });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 's' }, stringData: { k: 'v' } } });
    await custom.createNamespacedCustomObject({
      group: 'mandate.dev',
      version: 'v1alpha1',
      namespace: ns,
      plural: 'agentpolicies',
      body: { apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentPolicy', metadata: { name: 'p', finalizers: ['mandate.dev/test'] }, spec: { targets: { identities: ['x'] }, rules: [{ name: 'r', effect: 'Deny', actions: ['**'] }] } },
    });
    await cleanupNamespace(kc, ns);
    assert.ok(isNotFound(await apiError(() => core.readNamespace({ name: ns }))));
    assert.equal((await core.listPodForAllNamespaces({ fieldSelector: `metadata.namespace=${ns}` })).items.length, 0);
    const left = (await custom.listClusterCustomObject({ group: 'mandate.dev', version: 'v1alpha1', plural: 'agentpolicies', fieldSelector: `metadata.namespace=${ns}` })) as { items: unknown[] };
    assert.equal(left.items.length, 0);
  });

  test('restart() keeps the data and serves again on the same address, after SIGTERM and after SIGKILL', async () => {
    await withCrds();
    const ns = await freshNamespace('restart');
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'before' }, data: { k: 'v' } } });
    await custom.createNamespacedCustomObject({
      group: 'mandate.dev',
      version: 'v1alpha1',
      namespace: ns,
      plural: 'agentpolicies',
      body: { apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentPolicy', metadata: { name: 'kept' }, spec: { targets: { identities: ['x'] }, rules: [{ name: 'r', effect: 'Deny', actions: ['**'] }] } },
    });
    const server = cp.server;
    const { resourceVersion } = (await core.listNamespacedConfigMap({ namespace: ns })).metadata ?? {};
    assert.ok(resourceVersion);
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await cp.restart({ signal });
      assert.equal(cp.server, server);
      assert.equal((await core.readNamespacedConfigMap({ namespace: ns, name: 'before' })).data?.k, 'v');
      const kept = (await custom.getNamespacedCustomObject({ group: 'mandate.dev', version: 'v1alpha1', namespace: ns, plural: 'agentpolicies', name: 'kept' })) as AgentPolicy;
      assert.equal(kept.metadata?.name, 'kept');
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: `after-${signal.toLowerCase()}` } } });
    }
    const names = (await core.listNamespacedConfigMap({ namespace: ns })).items.map((c) => c.metadata?.name).sort();
    assert.deepEqual(names, ['after-sigkill', 'after-sigterm', 'before']);

    // The restarted API server's watch cache begins at its start: resuming a watch from before the
    // restart is answered with 410 Gone, the case informers must relist for.
    const events: { type: string; obj: unknown }[] = [];
    let request: AbortController | undefined;
    const closed = new Promise<unknown>((resolve) => {
      void new Watch(kc)
        .watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion }, (type, obj) => events.push({ type, obj }), resolve)
        .then((req) => (request = req), resolve);
    });
    try {
      await eventually(() => assert.ok(events.length > 0), 10_000);
    } finally {
      request?.abort();
    }
    await closed;
    assert.equal(events[0]?.type, 'ERROR');
    assert.equal((events[0]?.obj as { code?: number }).code, 410);
    const log = await readFile(cp.logs.kubeApiserver, 'utf8');
    assert.ok(log.length > 0, 'kube-apiserver logs to its file');
  });
});

describe('test control plane: binaries and process hygiene', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'kube-harness-test-'));
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  test('an override that does not exist is a hard failure, never a skip', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, KUBE_APISERVER_BIN: join(scratch, 'missing-kube-apiserver') };
    await assert.rejects(ensureBinary('kube-apiserver', { env }), (err: unknown) => err instanceof KubeBinaryError && err.reason === 'override-broken' && /KUBE_APISERVER_BIN=/.test(err.message));
    const assets: NodeJS.ProcessEnv = { ...process.env, KUBEBUILDER_ASSETS: scratch };
    delete assets.ETCD_BIN;
    await assert.rejects(ensureBinary('etcd', { env: assets }), (err: unknown) => err instanceof KubeBinaryError && err.reason === 'override-broken' && /KUBEBUILDER_ASSETS=/.test(err.message));
  });

  test('KUBEBUILDER_ASSETS supplies both binaries, as with envtest', async () => {
    const assets = join(scratch, 'assets');
    await mkdir(assets);
    const real = await ensureControlPlaneBinaries({ log: () => {} });
    await symlink(real.kubeApiserver.path, join(assets, 'kube-apiserver'));
    await symlink(real.etcd.path, join(assets, 'etcd'));
    const env: NodeJS.ProcessEnv = { ...process.env, KUBEBUILDER_ASSETS: assets };
    delete env.KUBE_APISERVER_BIN;
    delete env.ETCD_BIN;
    const viaAssets = await ensureControlPlaneBinaries({ env });
    assert.equal(viaAssets.kubeApiserver.source, 'KUBEBUILDER_ASSETS');
    assert.equal(viaAssets.kubeApiserver.path, join(assets, 'kube-apiserver'));
    assert.equal(viaAssets.kubeApiserver.version, real.kubeApiserver.version);
    assert.equal(viaAssets.etcd.source, 'KUBEBUILDER_ASSETS');
    assert.equal(viaAssets.etcd.version, real.etcd.version);
  });

  test('a control plane that cannot start fails with the tail of its log and leaves nothing behind', async () => {
    const binaries = await ensureControlPlaneBinaries({ log: () => {} });
    let logPath = '';
    await assert.rejects(startControlPlane({ binaries, extraApiserverArgs: ['--no-such-flag=1'], log: () => {} }), (err: Error) => {
      assert.match(err.message, /kube-apiserver exited \(exit code 1\) before it was ready/);
      assert.match(err.message, /unknown flag: --no-such-flag/);
      logPath = /(\S+\/kube-apiserver\.log)/.exec(err.message)?.[1] ?? '';
      return true;
    });
    assert.match(logPath, /mandate-kube-/);
    await assert.rejects(access(dirname(logPath)), 'the temporary folder is gone');
  });

  test('without Go and without a cached binary, the failure says how to get one', async () => {
    const env: NodeJS.ProcessEnv = { PATH: join(scratch, 'empty-path'), MANDATE_TOOLS_CACHE: join(scratch, 'cache'), HOME: scratch };
    await assert.rejects(ensureBinary('etcd', { env, log: () => {} }), (err: unknown) => err instanceof KubeBinaryError && err.reason === 'go-missing' && /ETCD_BIN/.test(err.message));
  });

  test('the wrapper modules pin every staging module and every etcd sibling at the release', () => {
    const kube = parseUpstreamGoMod(
      'module k8s.io/kubernetes\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go // comment\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n',
    );
    const mod = kubeWrapperGoMod(kube, 'v1.34.4');
    assert.match(mod, /^go 1\.24\.0$/m);
    assert.match(mod, /^godebug default=go1\.24$/m);
    assert.match(mod, /^require k8s\.io\/kubernetes v1\.34\.4$/m);
    assert.match(mod, /^\tk8s\.io\/api => k8s\.io\/api v0\.34\.4$/m);
    assert.match(mod, /^\tk8s\.io\/client-go => k8s\.io\/client-go v0\.34\.4$/m);
    assert.doesNotMatch(mod, /github\.com\/x\/y/);
    const etcd = parseUpstreamGoMod('module go.etcd.io/etcd/server/v3\n\ngo 1.26.0\n\nreplace (\n\tgo.etcd.io/etcd/api/v3 => ../api\n\tgo.etcd.io/etcd/client/v3 => ../client/v3\n)\n\nreplace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY\n');
    const etcdMod = etcdWrapperGoMod(etcd, 'v3.6.16');
    assert.match(etcdMod, /^\tgo\.etcd\.io\/etcd\/server\/v3 v3\.6\.16$/m);
    assert.match(etcdMod, /^\tgo\.etcd\.io\/etcd\/api\/v3 v3\.6\.16$/m);
    assert.match(etcdMod, /^\tgo\.etcd\.io\/etcd\/client\/v3 v3\.6\.16$/m);
    assert.doesNotMatch(etcdMod, /FORBIDDEN|replace/);
  });

  test('child processes and the temporary folder do not survive a SIGKILLed test process', async () => {
    const dir = await mkdtemp(join(scratch, 'group-'));
    // A stand-in test process: starts a long-running child through a ProcessGroup, reports its
    // pid, and is then killed in the one way Node cannot clean up after.
    const script = `
      const { ProcessGroup } = await import(${JSON.stringify(processesTs)});
      const group = new ProcessGroup(${JSON.stringify(dir)});
      const child = group.start('sleeper', '/bin/sleep', ['300']);
      console.log(child.pid);
      setInterval(() => {}, 1000);
    `;
    const victim = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: victim.stdout }), 'line')) as [string];
    const pid = Number(line);
    assert.ok(Number.isInteger(pid) && pid > 0 && (await processAlive(pid)), `sleeper running (${line})`);
    victim.kill('SIGKILL');
    await once(victim, 'exit');
    await eventually(async () => {
      assert.equal(await processAlive(pid), false, 'the child died with its test process');
      await assert.rejects(access(dir), 'the temporary folder was removed');
    }, 15_000);
  });
});
