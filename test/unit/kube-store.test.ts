// The cluster store over an in-memory API (kube-fake-api.ts) and the real compiler: publishing,
// last-good substitution, Secret scoping and outages. The same store against a real kube-apiserver
// is in test/integration/kube-store.test.ts.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentIdentity, AgentPolicy, AgentTool } from '../../crds/generated/types.ts';
import { compileSnapshot, type Compiled } from '../../controller/src/authz/compiled.ts';
import { createLogger } from '../../controller/src/log.ts';
import { KubeStore } from '../../controller/src/store/kube.ts';
import type { SnapshotLoad } from '../../controller/src/store/snapshot.ts';
import { FakeCluster, until } from './kube-fake-api.ts';

const TOKEN = 'tok-3f9a1c-never-log-me';

const identity = (ns: string, name: string, spec: Partial<AgentIdentity['spec']> = {}): AgentIdentity => ({
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentIdentity',
  metadata: { name, namespace: ns },
  spec: { owner: 'team@example.com', serviceAccount: name, ...spec },
});
const policy = (ns: string, name: string, when?: string): AgentPolicy => ({
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentPolicy',
  metadata: { name, namespace: ns },
  spec: { targets: { identities: ['agent'] }, rules: [{ name: 'deny-delete', effect: 'Deny', actions: ['files.delete'], ...(when !== undefined ? { when } : {}) }] },
});
const tool = (ns: string, name: string, secret?: string): AgentTool => ({
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentTool',
  metadata: { name, namespace: ns },
  spec: {
    hosts: [`${name}.${ns}.example.com`],
    ...(secret !== undefined ? { credential: { secretRef: { name: secret, key: 'token' } } } : {}),
    actions: [{ name: 'files.delete', http: { method: 'DELETE', path: '/files/{id}' } }],
  },
});
const secret = (ns: string, name: string, value: string) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, namespace: ns },
  type: 'Opaque',
  data: { token: Buffer.from(value).toString('base64') },
});

const stores: KubeStore<Compiled>[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop()));
});

function setup(debounceMs = 5) {
  const cluster = new FakeCluster();
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', write: (l) => lines.push(l) });
  const store = new KubeStore<Compiled>({
    sources: cluster,
    log,
    compile: (s) => compileSnapshot(s, 'cluster.local'),
    watchdogSeconds: 60,
    debounceMs,
    backoff: { initialMs: 1, maxMs: 5 },
  });
  stores.push(store);
  const loads: SnapshotLoad[] = [];
  store.subscribe((l) => loads.push(l));
  return { cluster, store, lines, loads };
}

const revision = (store: KubeStore<Compiled>): number => store.current()?.snapshot.revision ?? 0;
const servedRv = (store: KubeStore<Compiled>, key: string): string | undefined => store.current()?.snapshot.policies.get(key)?.metadata.resourceVersion;

describe('kube store: publishing', () => {
  test('start resolves after the first sync with every object published, compiled and frozen', async () => {
    const { cluster, store } = setup();
    cluster.identities.put(identity('team-a', 'agent'));
    cluster.policies.put(policy('team-a', 'p'));
    cluster.tools.put(tool('team-a', 'files', 'files-token'));
    cluster.secretsIn('team-a').put(secret('team-a', 'files-token', TOKEN));
    assert.equal(store.current(), undefined);
    const first = await store.start();
    assert.deepEqual(first, { ok: true, revision: 1, problems: [] });
    const pub = store.current();
    assert.ok(pub);
    assert.equal(pub.snapshot.identities.size, 1);
    assert.equal(pub.snapshot.policies.has('team-a/p'), true);
    assert.equal(pub.snapshot.tools.has('team-a/files'), true);
    assert.equal(pub.snapshot.secrets.get('team-a/files-token')?.values.get('token'), TOKEN, 'Secret values decoded');
    assert.ok(pub.compiled.policies.plans.has('spiffe://cluster.local/ns/team-a/agent/agent'));
    assert.ok(Object.isFrozen(pub) && Object.isFrozen(pub.snapshot));
    assert.throws(() => (pub.snapshot.policies as Map<string, AgentPolicy>).delete('team-a/p'), TypeError);
    const h = store.health();
    assert.equal(h.synced, true);
    assert.ok(h.lastSyncAt);
    assert.equal(h.watchErrors, 0);
    assert.deepEqual(h.informers.map((i) => i.name).sort(), ['agentidentities', 'agentpolicies', 'agenttools', 'secrets/team-a']);
  });

  test('an update becomes a new revision; a check holding the previous pair keeps it unchanged', async () => {
    const { cluster, store } = setup();
    cluster.identities.put(identity('team-a', 'agent'));
    cluster.policies.put(policy('team-a', 'p'));
    await store.start();
    const held = store.current();
    const heldRv = servedRv(store, 'team-a/p');
    const updated = cluster.policies.put(policy('team-a', 'p', 'params.size > 10'));
    await until(() => servedRv(store, 'team-a/p') === updated.metadata.resourceVersion, 'the update published');
    assert.equal(revision(store), 2);
    assert.equal(held?.snapshot.revision, 1);
    assert.equal(held?.snapshot.policies.get('team-a/p')?.metadata.resourceVersion, heldRv);
    assert.equal(store.current()?.snapshot.policies.get('team-a/p')?.spec.rules[0]?.when, 'params.size > 10');
  });

  test('a delete is published', async () => {
    const { cluster, store } = setup();
    cluster.policies.put(policy('team-a', 'p'));
    cluster.policies.put(policy('team-a', 'q'));
    await store.start();
    cluster.policies.remove('team-a', 'q');
    await until(() => store.current()?.snapshot.policies.has('team-a/q') === false, 'the delete published');
    assert.equal(store.current()?.snapshot.policies.has('team-a/p'), true);
  });

  test('a burst of changes is coalesced into a few publishes', async () => {
    const { cluster, store } = setup(25);
    await store.start();
    for (let i = 0; i < 50; i++) cluster.policies.put(policy('team-a', `p${i}`));
    await until(() => store.current()?.snapshot.policies.size === 50, 'all 50 published');
    assert.ok(revision(store) <= 6, `50 changes took ${revision(store) - 1} publishes`);
  });

  test('events that change nothing served publish nothing (no empty revisions)', async () => {
    const { cluster, store, loads } = setup();
    cluster.tools.put(tool('team-a', 'files', 'files-token'));
    cluster.secretsIn('team-a').put(secret('team-a', 'files-token', TOKEN));
    await store.start();
    const before = loads.length;
    cluster.secretsIn('team-a').put(secret('team-a', 'unrelated', 'x'));
    cluster.policies.put(policy('team-a', 'p'));
    await until(() => store.current()?.snapshot.policies.has('team-a/p') === true, 'policy published');
    assert.equal(revision(store), 2, 'the unreferenced Secret did not cause a revision of its own');
    assert.equal(loads.length - before, 1);
  });

  test('a subscriber that throws does not stop publishing or other subscribers', async () => {
    const { cluster, store, loads, lines } = setup();
    store.subscribe(() => {
      throw new Error('subscriber bug');
    });
    await store.start();
    cluster.policies.put(policy('team-a', 'p'));
    await until(() => revision(store) === 2, 'second revision');
    assert.ok(loads.length >= 2);
    assert.ok(lines.some((l) => l.includes('store subscriber threw')));
  });

  test('stop before the first sync makes start reject', async () => {
    const { cluster, store } = setup();
    for (let i = 0; i < 10_000; i++) cluster.policies.listFailures.push(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }));
    const starting = store.start();
    await until(() => cluster.policies.listCalls > 1, 'list attempts');
    await store.stop();
    await assert.rejects(starting, { code: 'NOT_READY' });
  });
});

describe('kube store: one broken object does not freeze the cluster', () => {
  test('a broken edit keeps the last good version served, others still publish, and a fix is served', async () => {
    const { cluster, store } = setup();
    cluster.identities.put(identity('team-a', 'agent'));
    const good = cluster.policies.put(policy('team-a', 'p', 'params.size > 10'));
    await store.start();
    cluster.policies.put(policy('team-a', 'p', 'params.size >'));
    const other = cluster.policies.put(policy('team-b', 'q'));
    await until(() => store.current()?.snapshot.policies.has('team-b/q') === true, "the other team's policy");
    assert.equal(servedRv(store, 'team-a/p'), good.metadata.resourceVersion, 'p at its last good version');
    const problems = store.problems();
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.object, 'AgentPolicy team-a/p');
    assert.equal(problems[0]?.field, '.spec.rules[0].when');
    assert.equal(store.fallbacks().get('AgentPolicy team-a/p')?.served, 'lastGood');
    assert.equal(store.fallbacks().get('AgentPolicy team-a/p')?.resourceVersion, good.metadata.resourceVersion);
    assert.equal(store.current()?.snapshot.policies.get('team-b/q')?.metadata.resourceVersion, other.metadata.resourceVersion);

    const fixed = cluster.policies.put(policy('team-a', 'p', 'params.size > 20'));
    await until(() => servedRv(store, 'team-a/p') === fixed.metadata.resourceVersion, 'the fix');
    assert.deepEqual(store.problems(), []);
    assert.equal(store.fallbacks().size, 0);
  });

  test('a broken edit that changes nothing served is reported without a new revision', async () => {
    const { cluster, store, loads } = setup();
    cluster.policies.put(policy('team-a', 'p', 'params.size > 10'));
    await store.start();
    cluster.policies.put(policy('team-a', 'p', 'params.size >'));
    await until(() => store.problems().length === 1, 'the problem');
    assert.equal(revision(store), 1);
    assert.equal(loads.at(-1)?.ok, false);
    assert.equal(loads.at(-1)?.problems[0]?.object, 'AgentPolicy team-a/p');
  });

  test('a new object that does not compile is left out and reported', async () => {
    const { cluster, store } = setup();
    cluster.policies.put(policy('team-a', 'ok'));
    cluster.policies.put(policy('team-a', 'bad', 'nope(('));
    const first = await store.start();
    assert.equal(first.ok, true);
    assert.equal(store.current()?.snapshot.policies.has('team-a/bad'), false);
    assert.equal(store.current()?.snapshot.policies.has('team-a/ok'), true);
    assert.equal(first.problems[0]?.object, 'AgentPolicy team-a/bad');
    assert.equal(store.fallbacks().get('AgentPolicy team-a/bad')?.served, 'none');
  });

  test('deleting an object forgets its last good version: created again broken, it is not served', async () => {
    const { cluster, store } = setup();
    cluster.policies.put(policy('team-a', 'p'));
    await store.start();
    cluster.policies.remove('team-a', 'p');
    await until(() => store.current()?.snapshot.policies.has('team-a/p') === false, 'delete');
    cluster.policies.put(policy('team-a', 'p', 'broken(('));
    await until(() => store.problems().length === 1, 'problem of the new object');
    assert.equal(store.current()?.snapshot.policies.has('team-a/p'), false);
  });

  test('a kill switch in a broken edit still applies: the identity is served suspended', async () => {
    const { cluster, store } = setup();
    cluster.identities.put(identity('team-a', 'agent'));
    await store.start();
    cluster.identities.put(identity('team-a', 'agent', { suspended: true, expiresAt: 'not-a-time' }));
    await until(() => store.current()?.snapshot.identities.get('team-a/agent')?.spec.suspended === true, 'suspension');
    assert.equal(store.current()?.compiled.policies.plans.get('spiffe://cluster.local/ns/team-a/agent/agent')?.suspended, true);
    assert.equal(store.fallbacks().get('AgentIdentity team-a/agent')?.suspendedOverride, true);
  });
});

describe('kube store: Secrets', () => {
  test('only namespaces with credentialed tools are watched; values reach the snapshot, rotate, and never the logs', async () => {
    const { cluster, store, lines } = setup();
    cluster.tools.put(tool('team-a', 'files', 'files-token'));
    cluster.tools.put(tool('team-b', 'plain'));
    cluster.secretsIn('team-a').put(secret('team-a', 'files-token', TOKEN));
    await store.start();
    assert.deepEqual(cluster.requested, ['team-a'], 'no Secret informer for a namespace without credentials');
    assert.equal(store.current()?.snapshot.secrets.get('team-a/files-token')?.values.get('token'), TOKEN);

    cluster.secretsIn('team-a').put(secret('team-a', 'files-token', `${TOKEN}-rotated`));
    await until(() => store.current()?.snapshot.secrets.get('team-a/files-token')?.values.get('token') === `${TOKEN}-rotated`, 'rotation');

    // The last credentialed tool of a namespace goes: its Secret informer stops.
    cluster.tools.remove('team-a', 'files');
    await until(() => !store.health().informers.some((i) => i.name === 'secrets/team-a'), 'Secret informer stopped');
    assert.equal(store.current()?.snapshot.secrets.size, 0);

    const all = lines.join('\n');
    assert.ok(all.includes('snapshot published'), 'something was logged');
    assert.ok(!all.includes(TOKEN) && !all.includes(Buffer.from(TOKEN).toString('base64')), 'the Secret value is never logged');
  });

  test('a credential Secret created after its tool makes the tool served', async () => {
    const { cluster, store } = setup();
    cluster.tools.put(tool('team-a', 'files', 'files-token'));
    const first = await store.start();
    assert.equal(store.current()?.snapshot.tools.has('team-a/files'), false);
    assert.match(first.problems.map((p) => `${p.object} ${p.message}`).join('\n'), /AgentTool team-a\/files .*files-token not found/);
    cluster.secretsIn('team-a').put(secret('team-a', 'files-token', TOKEN));
    await until(() => store.current()?.snapshot.tools.has('team-a/files') === true, 'tool served');
    assert.deepEqual(store.problems(), []);
  });

  test('a namespace whose Secrets are forbidden holds back only its own credentialed tools, and recovers when allowed', async () => {
    const { cluster, store } = setup();
    cluster.forbidden.add('team-b');
    cluster.tools.put(tool('team-a', 'plain'));
    cluster.tools.put(tool('team-b', 'files', 'files-token'));
    cluster.secretsIn('team-b').put(secret('team-b', 'files-token', TOKEN));
    const first = await store.start(); // does not wait forever on team-b's RBAC
    assert.equal(first.ok, true);
    assert.equal(store.current()?.snapshot.tools.has('team-a/plain'), true);
    assert.equal(store.current()?.snapshot.tools.has('team-b/files'), false);
    assert.ok(store.health().lastSyncAt, "one namespace's missing RoleBinding does not make the whole cache look stale");
    const problem = store.problems().find((p) => p.object === 'AgentTool team-b/files');
    assert.match(problem?.message ?? '', /cannot list the Secrets of namespace team-b \(403\)/);
    assert.equal(problem?.field, '.spec.credential.secretRef');

    cluster.forbidden.delete('team-b');
    await until(() => store.current()?.snapshot.tools.has('team-b/files') === true, 'tool served once allowed');
    assert.equal(store.current()?.snapshot.secrets.get('team-b/files-token')?.values.get('token'), TOKEN);
  });

  test('a namespace that gets a credentialed tool later, without access to its Secrets, says so', async () => {
    const { cluster, store } = setup();
    cluster.forbidden.add('team-c');
    await store.start();
    cluster.tools.put(tool('team-c', 'files', 'files-token'));
    await until(() => store.problems().some((p) => p.object === 'AgentTool team-c/files' && /\(403\)/.test(p.message)), 'the 403 problem');
    assert.equal(store.current()?.snapshot.tools.has('team-c/files'), false);
  });
});

describe('kube store: API server outages', () => {
  test('the last snapshot is served while the API server is away, and a change made meanwhile arrives after', async () => {
    const { cluster, store } = setup();
    cluster.identities.put(identity('team-a', 'agent'));
    cluster.policies.put(policy('team-a', 'p'));
    await store.start();
    const before = store.current();
    const down = (): Error => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    const resources = [cluster.identities, cluster.policies, cluster.tools];
    for (const r of resources) for (let i = 0; i < 20; i++) r.watchFailures.push(down());
    for (const r of resources) r.endWatches(Object.assign(new Error('socket hang up'), { cause: { code: 'ECONNRESET' } }));
    await until(() => store.health().watchErrors >= 6, 'watch errors');
    assert.equal(store.current(), before, 'same published pair');
    assert.equal(store.health().synced, true, 'still ready: the last snapshot is served');
    const changed = cluster.policies.put(policy('team-a', 'p', 'params.size > 1'));
    for (const r of resources) r.watchFailures.length = 0;
    await until(() => servedRv(store, 'team-a/p') === changed.metadata.resourceVersion, 'the change made during the outage');
  });
});
