// The cluster store against a real kube-apiserver and etcd: first sync, propagation of a policy
// change and of a kill switch (measured and printed; the issue requires < 1 s), deletes, Secrets
// under least privilege (per-namespace RoleBindings), a broken object that does not freeze the
// rest, a 410 relist without spurious deletes, and recovery after an API server restart.
//
// The store runs as its own user with only the rights it needs: list and watch on the three CRDs
// cluster-wide, and on Secrets only in namespaces bound to a ClusterRole by a RoleBinding.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CustomObjectsApi, CoreV1Api, RbacAuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { compileSnapshot, type Compiled } from '../../controller/src/authz/compiled.ts';
import { buildConfig } from '../../controller/src/config.ts';
import { createKubeClients, loadKubeConfig } from '../../controller/src/kube/client.ts';
import type { ListerWatcher, WatchHandle } from '../../controller/src/kube/reflector.ts';
import { kubeSources, type SourceFactory } from '../../controller/src/kube/resources.ts';
import { createLogger } from '../../controller/src/log.ts';
import { KubeStore } from '../../controller/src/store/kube.ts';
import type { PublishedSnapshot } from '../../controller/src/store/snapshot.ts';
import {
  applyCrds,
  cleanupNamespace,
  countRealApiserverTests,
  createNamespace,
  retryTooManyRequests,
  startControlPlane,
  uniqueNamespace,
  type ControlPlane,
} from '../harness/kube/index.ts';
import { identityManifest, policyManifest, toolManifest } from '../harness/kube/manifests.ts';

const GROUP = 'mandate.dev';
const VERSION = 'v1alpha1';
const STORE_USER = 'mandate-store';
const SECRETS_ROLE = 'mandate-store-secrets';
const TOKEN = 'it-tok-7c1e55d0-must-not-be-logged';

const identity = identityManifest;
const policy = (name: string, when?: string) => policyManifest(name, { name: 'deny-delete', effect: 'Deny', actions: ['files.delete'], ...(when !== undefined ? { when } : {}) });
const tool = toolManifest;

/** Wraps the real sources so a test can cut the policies watch and make its next start stale. */
class Tap implements SourceFactory {
  readonly #inner: SourceFactory;
  readonly #open = new Set<{ handle: WatchHandle; onDone: (err?: unknown) => void }>();
  /** The next policies watch starts from this resourceVersion instead of the informer's. */
  staleResourceVersion: string | undefined;
  /** While set, a new policies watch waits for it before it starts. */
  gate: Promise<void> | undefined;

  constructor(inner: SourceFactory) {
    this.#inner = inner;
  }

  customResources(r: Parameters<SourceFactory['customResources']>[0]): ListerWatcher {
    const inner = this.#inner.customResources(r);
    if (r.plural !== 'agentpolicies') return inner;
    return {
      list: (o) => inner.list(o),
      watch: async (o, onEvent, onDone) => {
        await this.gate;
        const resourceVersion = this.staleResourceVersion ?? o.resourceVersion;
        this.staleResourceVersion = undefined;
        const handle = await inner.watch({ ...o, resourceVersion }, onEvent, onDone);
        const entry = { handle, onDone };
        this.#open.add(entry);
        return { abort: () => (this.#open.delete(entry), handle.abort()) };
      },
    };
  }

  secrets(namespace: string): ListerWatcher {
    return this.#inner.secrets(namespace);
  }

  /** Closes the open policies watches, as a dropped connection would. */
  cut(): void {
    for (const e of [...this.#open]) {
      this.#open.delete(e);
      e.handle.abort();
      e.onDone();
    }
  }
}

/** Polls `pred` every 20 ms until it holds; fails with `what` after `ms`. */
async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('kube store against a real API server', () => {
  countRealApiserverTests('kube-store.test.ts');
  let cp: ControlPlane;
  let kc: KubeConfig;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let rbac: RbacAuthorizationV1Api;
  let store: KubeStore<Compiled>;
  let tap: Tap;
  const logLines: string[] = [];
  const namespaces: string[] = [];
  let seeded: string;

  const freshNamespace = async (prefix: string, opts: { secrets?: boolean } = {}): Promise<string> => {
    const ns = await createNamespace(kc, uniqueNamespace(prefix));
    namespaces.push(ns);
    if (opts.secrets !== false) await grantSecrets(ns);
    return ns;
  };
  const grantSecrets = async (ns: string): Promise<void> => {
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: SECRETS_ROLE },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: SECRETS_ROLE },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: STORE_USER }],
      },
    });
  };
  const create = (ns: string, plural: string, body: object): Promise<{ metadata: { resourceVersion: string } }> =>
    retryTooManyRequests(() => custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, body })) as Promise<{
      metadata: { resourceVersion: string };
    }>;
  const patch = (ns: string, plural: string, name: string, ops: object[]): Promise<{ metadata: { resourceVersion: string } }> =>
    retryTooManyRequests(() => custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, name, body: ops })) as Promise<{
      metadata: { resourceVersion: string };
    }>;
  const remove = (ns: string, plural: string, name: string): Promise<unknown> =>
    retryTooManyRequests(() => custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, name }));

  /** Resolves once a published snapshot satisfies `pred`; returns the ms it took from the call. */
  const published = (pred: (p: PublishedSnapshot<Compiled>) => boolean, what: string, ms = 10_000): Promise<number> => {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const cur = store.current();
        if (!cur || !pred(cur)) return false;
        clearTimeout(timer);
        unsubscribe();
        resolve(performance.now() - started);
        return true;
      };
      const timer = setTimeout(() => {
        unsubscribe();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; problems: ${JSON.stringify(store.problems())}; health: ${JSON.stringify(store.health())}`));
      }, ms);
      const unsubscribe = store.subscribe(() => void check());
      check();
    });
  };

  before(async () => {
    cp = await startControlPlane();
    kc = cp.adminKubeConfig();
    custom = kc.makeApiClient(CustomObjectsApi);
    core = kc.makeApiClient(CoreV1Api);
    rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await applyCrds(kc);

    // Least privilege for the store: list+watch the CRDs everywhere; Secrets only where bound.
    await rbac.createClusterRole({
      body: {
        metadata: { name: 'mandate-store-crds' },
        rules: [{ apiGroups: [GROUP], resources: ['agentidentities', 'agentpolicies', 'agenttools'], verbs: ['list', 'watch'] }],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: 'mandate-store-crds' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'mandate-store-crds' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: STORE_USER }],
      },
    });
    await rbac.createClusterRole({ body: { metadata: { name: SECRETS_ROLE }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] }] } });

    // Objects that exist before the store starts.
    seeded = await freshNamespace('seeded');
    await create(seeded, 'agentidentities', identity('agent'));
    await create(seeded, 'agentpolicies', policy('p1'));
    await create(seeded, 'agentpolicies', policy('p2', 'params.size > 10'));
    await create(seeded, 'agenttools', tool('files'));

    const config = buildConfig({ cluster: { kubeconfig: await cp.kubeconfigFor({ name: STORE_USER }), watchdogSeconds: 30 } });
    const clients = createKubeClients(loadKubeConfig(config.cluster));
    tap = new Tap(kubeSources(clients, config.cluster.watchdogSeconds * 1000));
    store = new KubeStore<Compiled>({
      sources: tap,
      log: createLogger({ level: 'debug', write: (line) => logLines.push(line) }),
      compile: (s) => compileSnapshot(s, config.trustDomain),
      watchdogSeconds: config.cluster.watchdogSeconds,
      // Faster retries than production so the RBAC and restart cases finish quickly.
      backoff: { initialMs: 100, maxMs: 1000 },
      source: `kubernetes:${clients.server}`,
    });
  });

  after(async () => {
    await store?.stop();
    if (!cp) return;
    try {
      for (const ns of namespaces) await cleanupNamespace(kc, ns);
    } finally {
      await cp.stop();
    }
  });

  test('the first sync publishes the objects that already exist', async () => {
    const first = await store.start();
    assert.equal(first.ok, true);
    assert.deepEqual(first.problems, []);
    const snap = store.current()?.snapshot;
    assert.equal(snap?.revision, 1);
    assert.deepEqual([...(snap?.policies.keys() ?? [])].sort(), [`${seeded}/p1`, `${seeded}/p2`]);
    assert.equal(snap?.identities.has(`${seeded}/agent`), true);
    assert.equal(snap?.tools.has(`${seeded}/files`), true);
    assert.ok(store.current()?.compiled.policies.plans.has(`spiffe://cluster.local/ns/${seeded}/agent/agent`));
    const h = store.health();
    assert.equal(h.synced, true);
    assert.ok(h.lastSyncAt);
    assert.ok(h.informers.every((i) => i.synced && i.errors === 0), JSON.stringify(h.informers));
  });

  test('a policy change is published within 1 s (measured over several changes)', async () => {
    const ns = await freshNamespace('propagate');
    await create(ns, 'agentidentities', identity('agent'));
    await create(ns, 'agentpolicies', policy('p'));
    await published((p) => p.snapshot.policies.has(`${ns}/p`), 'the new policy');
    const samples: number[] = [];
    for (let i = 0; i < 7; i++) {
      const started = performance.now();
      const updated = await patch(ns, 'agentpolicies', 'p', [{ op: 'add', path: '/spec/rules/0/when', value: `params.size > ${i}` }]);
      await published((p) => p.snapshot.policies.get(`${ns}/p`)?.metadata.resourceVersion === updated.metadata.resourceVersion, `policy update ${i}`);
      samples.push(performance.now() - started);
    }
    samples.sort((a, b) => a - b);
    const p50 = samples[Math.floor(samples.length / 2)] ?? 0;
    const max = samples.at(-1) ?? 0;
    console.log(`policy-change propagation (API write → published snapshot): p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms, n=${samples.length}`);
    assert.ok(max < 1000, `a policy change took ${max.toFixed(0)} ms to be published`);
  });

  test('a kill switch (suspended: true) reaches the compiled plan within 1 s', async () => {
    const ns = await freshNamespace('killswitch');
    await create(ns, 'agentidentities', identity('agent'));
    const spiffe = `spiffe://cluster.local/ns/${ns}/agent/agent`;
    await published((p) => p.compiled.policies.plans.get(spiffe)?.suspended === false, 'the identity');
    const started = performance.now();
    await patch(ns, 'agentidentities', 'agent', [{ op: 'add', path: '/spec/suspended', value: true }]);
    await published((p) => p.compiled.policies.plans.get(spiffe)?.suspended === true, 'the suspension');
    const took = performance.now() - started;
    console.log(`kill-switch propagation (API write → compiled plan suspended): ${took.toFixed(1)} ms`);
    assert.ok(took < 1000, `the kill switch took ${took.toFixed(0)} ms`);
  });

  test('a delete is published', async () => {
    const ns = await freshNamespace('delete');
    await create(ns, 'agentpolicies', policy('gone'));
    await create(ns, 'agentpolicies', policy('stays'));
    await published((p) => p.snapshot.policies.has(`${ns}/gone`) && p.snapshot.policies.has(`${ns}/stays`), 'both policies');
    await remove(ns, 'agentpolicies', 'gone');
    await published((p) => !p.snapshot.policies.has(`${ns}/gone`), 'the delete');
    assert.equal(store.current()?.snapshot.policies.has(`${ns}/stays`), true);
  });

  test('a Secret referenced by a tool is picked up and rotated, and its value never reaches the logs', async () => {
    const ns = await freshNamespace('secret');
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'files-token' }, type: 'Opaque', stringData: { token: TOKEN } } });
    await create(ns, 'agenttools', tool('files', 'files-token'));
    await published((p) => p.snapshot.secrets.get(`${ns}/files-token`)?.values.get('token') === TOKEN && p.snapshot.tools.has(`${ns}/files`), 'the tool and its Secret');
    assert.ok(store.health().informers.some((i) => i.name === `secrets/${ns}`));
    await core.replaceNamespacedSecret({ namespace: ns, name: 'files-token', body: { metadata: { name: 'files-token' }, type: 'Opaque', stringData: { token: `${TOKEN}-2` } } });
    await published((p) => p.snapshot.secrets.get(`${ns}/files-token`)?.values.get('token') === `${TOKEN}-2`, 'the rotated value');
    const logs = logLines.join('\n');
    assert.ok(logs.includes('snapshot published'));
    for (const value of [TOKEN, Buffer.from(TOKEN).toString('base64'), `${TOKEN}-2`]) assert.ok(!logs.includes(value), 'a Secret value was logged');
  });

  test('without a RoleBinding for Secrets, only that namespace\'s credentialed tool is held back; binding it fixes that', async () => {
    const ns = await freshNamespace('norbac', { secrets: false });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'files-token' }, type: 'Opaque', stringData: { token: TOKEN } } });
    await create(ns, 'agenttools', tool('files', 'files-token'));
    await create(ns, 'agentpolicies', policy('p'));
    await published((p) => p.snapshot.policies.has(`${ns}/p`), 'the policy of the same namespace');
    const label = `AgentTool ${ns}/files`;
    await until(() => store.problems().some((p) => p.object === label && /\(403\)/.test(p.message)), 'the 403 problem');
    const problem = store.problems().find((p) => p.object === label);
    assert.match(problem?.message ?? '', /cannot list the Secrets of namespace .* \(403\)/);
    assert.equal(store.current()?.snapshot.tools.has(`${ns}/files`), false);
    await grantSecrets(ns);
    await published((p) => p.snapshot.tools.has(`${ns}/files`), 'the tool once Secrets are readable', 15_000);
    assert.equal(store.problems().some((p) => p.object === label), false);
  });

  test('a policy whose `when` does not compile keeps its last good version; other changes still go out', async () => {
    const ns = await freshNamespace('broken');
    const good = await create(ns, 'agentpolicies', policy('p', 'params.size > 1'));
    await published((p) => p.snapshot.policies.has(`${ns}/p`), 'the good policy');
    await patch(ns, 'agentpolicies', 'p', [{ op: 'replace', path: '/spec/rules/0/when', value: 'params.size >' }]);
    await create(ns, 'agentpolicies', policy('q'));
    await published((p) => p.snapshot.policies.has(`${ns}/q`), "the other policy");
    assert.equal(store.current()?.snapshot.policies.get(`${ns}/p`)?.metadata.resourceVersion, good.metadata.resourceVersion);
    const problem = store.problems().find((p) => p.object === `AgentPolicy ${ns}/p`);
    assert.equal(problem?.field, '.spec.rules[0].when');
    assert.equal(store.fallbacks().get(`AgentPolicy ${ns}/p`)?.served, 'lastGood');
  });

  test('a relist after 410 Gone (a resourceVersion too old) reports only real changes', async () => {
    const ns = await freshNamespace('relist');
    for (const name of ['keep', 'change', 'drop']) await create(ns, 'agentpolicies', policy(name));
    await published((p) => ['keep', 'change', 'drop'].every((n) => p.snapshot.policies.has(`${ns}/${n}`)), 'the three policies');
    const informer = (): ReturnType<KubeStore<Compiled>['health']>['informers'][number] => store.health().informers.find((i) => i.name === 'agentpolicies')!;
    const before = informer();
    // Every snapshot published from here on must hold the untouched policies.
    const missing: number[] = [];
    const unsubscribe = store.subscribe(() => {
      const p = store.current()?.snapshot;
      if (p && !(p.policies.has(`${ns}/keep`) && p.policies.has(`${seeded}/p1`))) missing.push(p.revision);
    });
    try {
      // Cut the watch and hold the next one; change things meanwhile; the next watch starts from a
      // resourceVersion older than anything the server still has (its watch cache answers 410).
      let open: () => void = () => undefined;
      tap.gate = new Promise((resolve) => (open = resolve));
      tap.cut();
      const changed = await patch(ns, 'agentpolicies', 'change', [{ op: 'add', path: '/spec/rules/0/when', value: 'params.size > 3' }]);
      await remove(ns, 'agentpolicies', 'drop');
      await create(ns, 'agentpolicies', policy('new'));
      tap.staleResourceVersion = '1';
      tap.gate = undefined;
      open();
      await published(
        (p) =>
          p.snapshot.policies.get(`${ns}/change`)?.metadata.resourceVersion === changed.metadata.resourceVersion &&
          !p.snapshot.policies.has(`${ns}/drop`) &&
          p.snapshot.policies.has(`${ns}/new`),
        'the changes made while the watch was down',
      );
      const after = informer();
      assert.ok(after.relists > before.relists, `no relist happened: ${JSON.stringify(after)}`);
      assert.equal(after.changes.deleted - before.changes.deleted, 1, 'exactly one delete: the policy that was deleted');
      assert.equal(after.changes.added - before.changes.added, 1);
      assert.equal(after.changes.updated - before.changes.updated, 1);
      assert.deepEqual(missing, [], 'no snapshot lost an untouched policy');
    } finally {
      unsubscribe();
    }
  });

  test('after an API server restart the store recovers, and an update made right after the restart is not lost', async () => {
    const ns = await freshNamespace('restart');
    await create(ns, 'agentidentities', identity('agent'));
    await create(ns, 'agentpolicies', policy('p'));
    await published((p) => p.snapshot.policies.has(`${ns}/p`), 'the policy');
    const held = store.current();
    const deletedBefore = store.health().informers.map((i) => `${i.name}:${i.changes.deleted}`);
    await cp.restart();
    assert.equal(store.current()?.snapshot.revision, held?.snapshot.revision, 'the last snapshot is served through the restart');
    const updated = await patch(ns, 'agentpolicies', 'p', [{ op: 'add', path: '/spec/rules/0/when', value: 'params.size > 42' }]);
    const took = await published((p) => p.snapshot.policies.get(`${ns}/p`)?.metadata.resourceVersion === updated.metadata.resourceVersion, 'the update after the restart', 30_000);
    console.log(`recovery after an API server restart: the first update was published ${took.toFixed(0)} ms after its write`);
    // And the store is live again, not merely caught up once.
    const again = await patch(ns, 'agentidentities', 'agent', [{ op: 'add', path: '/spec/suspended', value: true }]);
    await published((p) => p.snapshot.identities.get(`${ns}/agent`)?.metadata.resourceVersion === again.metadata.resourceVersion, 'a second update');
    assert.equal(store.health().synced, true);
    // The restarted server's watch cache starts over, so informers relisted: nothing was deleted.
    assert.deepEqual(store.health().informers.map((i) => `${i.name}:${i.changes.deleted}`), deletedBefore, 'no spurious deletes across the restart');
  });
});
