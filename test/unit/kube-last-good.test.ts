import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentIdentity, AgentPolicy, AgentTool, MandateResource } from '../../crds/generated/types.ts';
import { labelOf, resolveServed, type ServedSets } from '../../controller/src/kube/last-good.ts';
import type { ManifestProblem } from '../../controller/src/store/snapshot.ts';

// A stand-in compiler with the problem shapes the real one has: an object's own problem (label
// broken=true), a cross-object one (two tools claiming one host), and a dependency one (a tool
// whose label needs=<secret> names a Secret not in `secrets`).
function fakeCompile(secrets: Set<string> = new Set()) {
  const calls: ServedSets[] = [];
  const compile = (s: ServedSets): { problems: ManifestProblem[]; served: ServedSets } => {
    calls.push(s);
    const problems: ManifestProblem[] = [];
    const all: [string, ReadonlyMap<string, MandateResource>][] = [['AgentIdentity', s.identities], ['AgentPolicy', s.policies], ['AgentTool', s.tools]];
    for (const [kind, map] of all) {
      for (const [key, o] of map) {
        if (o.metadata.labels?.broken === 'true') problems.push({ object: labelOf(kind, key), field: '.spec', message: 'broken' });
      }
    }
    const hosts = new Map<string, string[]>();
    for (const [key, t] of s.tools) {
      for (const h of t.spec.hosts) hosts.set(h, [...(hosts.get(h) ?? []), key]);
      const needs = t.metadata.labels?.needs;
      if (needs !== undefined && !secrets.has(needs)) problems.push({ object: labelOf('AgentTool', key), field: '.spec.credential.secretRef', message: `Secret ${needs} not found` });
    }
    for (const [h, keys] of hosts) if (keys.length > 1) for (const k of keys) problems.push({ object: labelOf('AgentTool', k), field: '.spec.hosts', message: `host ${h} claimed twice` });
    return { problems, served: s };
  };
  return { compile, calls };
}

const meta = (name: string, rv: string, labels?: Record<string, string>, uid = `uid-${name}`) => ({ name, namespace: 'ns', resourceVersion: rv, uid, generation: Number(rv), ...(labels ? { labels } : {}) });

const policy = (name: string, rv: string, labels?: Record<string, string>, uid?: string): AgentPolicy => ({
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentPolicy',
  metadata: meta(name, rv, labels, uid),
  spec: { targets: { identities: ['a'] }, rules: [{ name: 'r', effect: 'Deny', actions: ['x.y'] }] },
});
const tool = (name: string, rv: string, host: string, labels?: Record<string, string>): AgentTool => ({
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentTool',
  metadata: meta(name, rv, labels),
  spec: { hosts: [host], actions: [{ name: 'x.y', http: { method: 'GET', path: '/' } }] },
});
const identity = (name: string, rv: string, suspended: boolean, labels?: Record<string, string>): AgentIdentity => ({
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentIdentity',
  metadata: meta(name, rv, labels),
  spec: { owner: 'o', serviceAccount: name, ...(suspended ? { suspended: true } : {}) },
});

const sets = (p: { identities?: AgentIdentity[]; policies?: AgentPolicy[]; tools?: AgentTool[] }): ServedSets => ({
  identities: new Map((p.identities ?? []).map((o) => [`ns/${o.metadata.name}`, o])),
  policies: new Map((p.policies ?? []).map((o) => [`ns/${o.metadata.name}`, o])),
  tools: new Map((p.tools ?? []).map((o) => [`ns/${o.metadata.name}`, o])),
});
const good = (...objects: MandateResource[]): Map<string, MandateResource> => new Map(objects.map((o) => [labelOf(o.kind, `ns/${o.metadata.name}`), o]));
const rvOf = (m: ReadonlyMap<string, MandateResource>, key: string): string | undefined => m.get(key)?.metadata.resourceVersion;

describe('last-good substitution', () => {
  test('nothing broken: everything is served as it is, in one compile', () => {
    const { compile, calls } = fakeCompile();
    const r = resolveServed({ current: sets({ policies: [policy('p', '5')], tools: [tool('t', '6', 'a.example')] }), lastGood: new Map() }, compile);
    assert.ok(r.result);
    assert.equal(calls.length, 1);
    assert.equal(r.fallbacks.size, 0);
    assert.deepEqual(r.problems, []);
    assert.equal(rvOf(r.served.policies, 'ns/p'), '5');
  });

  test('a broken edit of a policy serves its last good version; the rest of the cluster moves on', () => {
    const { compile } = fakeCompile();
    const r = resolveServed(
      {
        current: sets({ policies: [policy('p', '9', { broken: 'true' }), policy('q', '8')] }),
        lastGood: good(policy('p', '5'), policy('q', '4')),
      },
      compile,
    );
    assert.ok(r.result, 'publishable');
    assert.equal(rvOf(r.served.policies, 'ns/p'), '5', 'p at its last good version');
    assert.equal(rvOf(r.served.policies, 'ns/q'), '8', 'q at its new version');
    assert.deepEqual(r.fallbacks.get('AgentPolicy ns/p'), {
      object: 'AgentPolicy ns/p',
      served: 'lastGood',
      currentResourceVersion: '9',
      resourceVersion: '5',
      generation: 5,
    });
    assert.deepEqual(r.problems, [{ object: 'AgentPolicy ns/p', field: '.spec', message: 'broken' }]);
  });

  test('an object that never compiled is left out and reported', () => {
    const { compile } = fakeCompile();
    const r = resolveServed({ current: sets({ policies: [policy('new', '3', { broken: 'true' }), policy('ok', '2')] }), lastGood: new Map() }, compile);
    assert.ok(r.result);
    assert.equal(r.served.policies.has('ns/new'), false);
    assert.equal(r.served.policies.has('ns/ok'), true);
    assert.equal(r.fallbacks.get('AgentPolicy ns/new')?.served, 'none');
    assert.equal(r.problems.length, 1);
  });

  test('a deleted and re-created object does not inherit the old one\'s last good version', () => {
    const { compile } = fakeCompile();
    const r = resolveServed(
      { current: sets({ policies: [policy('p', '9', { broken: 'true' }, 'uid-second')] }), lastGood: good(policy('p', '5', undefined, 'uid-first')) },
      compile,
    );
    assert.equal(r.served.policies.has('ns/p'), false);
    assert.equal(r.fallbacks.get('AgentPolicy ns/p')?.served, 'none');
  });

  test('a broken identity that says suspended: true is served suspended, whatever its last good version says', () => {
    const { compile } = fakeCompile();
    const r = resolveServed({ current: sets({ identities: [identity('a', '7', true, { broken: 'true' })] }), lastGood: good(identity('a', '3', false)) }, compile);
    assert.ok(r.result);
    const served = r.served.identities.get('ns/a');
    assert.equal(served?.metadata.resourceVersion, '3');
    assert.equal(served?.spec.suspended, true);
    assert.equal(r.fallbacks.get('AgentIdentity ns/a')?.suspendedOverride, true);
    assert.ok(Object.isFrozen(served), 'the suspended copy is frozen like every served object');
  });

  test('a new tool claiming a served tool\'s host is left out; the served tool keeps serving', () => {
    const { compile, calls } = fakeCompile();
    const old = tool('old', '2', 'api.example');
    const r = resolveServed({ current: sets({ tools: [old, tool('new', '9', 'api.example')] }), lastGood: good(old) }, compile);
    assert.ok(r.result);
    assert.equal(rvOf(r.served.tools, 'ns/old'), '2');
    assert.equal(r.served.tools.has('ns/new'), false);
    assert.equal(calls.length, 2);
    assert.deepEqual(r.problems.map((p) => p.object).sort(), ['AgentTool ns/new', 'AgentTool ns/old'], 'both sides of the conflict are reported');
  });

  test('a served object broken by something else (its Secret is gone) is left out once nothing else explains it', () => {
    const { compile } = fakeCompile(new Set());
    const t = tool('t', '4', 'a.example', { needs: 'token' });
    const r = resolveServed({ current: sets({ tools: [t, tool('u', '5', 'b.example')] }), lastGood: good(t) }, compile);
    assert.ok(r.result);
    assert.equal(r.served.tools.has('ns/t'), false, 'fail closed: a tool without its credential is not served');
    assert.equal(r.served.tools.has('ns/u'), true);
  });

  test('a problem that names no served object cannot be isolated: nothing is publishable', () => {
    const r = resolveServed({ current: sets({ policies: [policy('p', '1')] }), lastGood: new Map() }, () => ({
      problems: [{ object: 'snapshot', field: '', message: 'index too large' }],
    }));
    assert.equal(r.result, undefined);
    assert.deepEqual(r.problems.map((p) => p.object), ['snapshot']);
  });

  test('a compiler that throws makes nothing publishable, with the reason', () => {
    const r = resolveServed({ current: sets({ policies: [policy('p', '1')] }), lastGood: new Map() }, () => {
      throw new Error('boom');
    });
    assert.equal(r.result, undefined);
    assert.match(r.problems[0]?.message ?? '', /compilation failed: boom/);
  });

  test('a blocked version is not compiled: the last good one is served if it is not blocked too', () => {
    const { compile, calls } = fakeCompile();
    const blocked = (o: MandateResource) => (o.metadata.labels?.needs === 'unlisted' ? { field: '.spec.credential.secretRef', message: 'not listed yet' } : undefined);
    const r = resolveServed(
      { current: sets({ tools: [tool('a', '9', 'a.example', { needs: 'unlisted' }), tool('b', '8', 'b.example', { needs: 'unlisted' })] }), lastGood: good(tool('a', '3', 'a.example')), blocked },
      compile,
    );
    assert.ok(r.result);
    assert.equal(rvOf(r.served.tools, 'ns/a'), '3');
    assert.equal(r.served.tools.has('ns/b'), false);
    assert.ok(calls.every((c) => c.tools.get('ns/b') === undefined), 'the blocked version never reached the compiler');
    assert.deepEqual(r.problems.map((p) => `${p.object}: ${p.message}`).sort(), ['AgentTool ns/a: not listed yet', 'AgentTool ns/b: not listed yet']);
  });

  test('problems are reported once, and only for current versions', () => {
    const { compile } = fakeCompile();
    // The last good version is broken too (e.g. the compiler got stricter): reported once, for the current one.
    const r = resolveServed({ current: sets({ policies: [policy('p', '9', { broken: 'true' })] }), lastGood: good(policy('p', '5', { broken: 'true' })) }, compile);
    assert.ok(r.result);
    assert.equal(r.served.policies.size, 0);
    assert.equal(r.problems.length, 1);
  });
});
