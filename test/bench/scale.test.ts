// The scaled policy set must be what the report says it is (100 identities, 1,000 rules), must be
// accepted by Mandate's own manifest validation and compilers, and every message of the load mix
// must get the decision its category promises, through the real (pure) check pipeline.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { AgentTool } from '../../crds/generated/types.ts';
import { classify } from '../../controller/src/authz/classify.ts';
import { authProtoTypes, encodeStrict } from '../../controller/src/authz/protos.ts';
import { isMalformed, toHttpAttributes } from '../../controller/src/authz/request.ts';
import { compileTools } from '../../controller/src/authz/tools.ts';
import { compilePolicies } from '../../controller/src/policy/compile.ts';
import { decide } from '../../controller/src/policy/decide.ts';
import { createLimiterState } from '../../controller/src/policy/limits.ts';
import { loadManifests } from '../../controller/src/store/manifests.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';
import { loadValidator } from '../../controller/src/store/validate.ts';
import { defaultScale, mixWeights, scale, type MixCategory, type ScaledSet } from './scale.ts';
import { readExampleManifests, writeLoadData, writeScaledSet } from './scale-files.ts';

const dir = await mkdtemp(join(tmpdir(), 'bench-scale-test-'));
after(() => rm(dir, { recursive: true, force: true }));
const validator = await loadValidator();

async function snapshotOf(set: ScaledSet, name: string): Promise<Snapshot> {
  const written = await writeScaledSet(join(dir, name), set);
  const files = await Promise.all(written.files.map(async (path) => ({ path, text: await readFile(path, 'utf8') })));
  const { set: loaded, problems } = loadManifests(files, validator);
  assert.deepEqual(problems, []);
  return { revision: 1, loadedAt: new Date().toISOString(), source: `files:${name}`, identities: loaded.identities, policies: loaded.policies, tools: loaded.tools, secrets: loaded.secrets };
}

interface Outcome {
  readonly effect: string;
  readonly reason: string;
  readonly policy?: string;
}

function decideAll(set: ScaledSet, snapshot: Snapshot): Outcome[] {
  const tools = compileTools(snapshot);
  assert.deepEqual(tools.problems, []);
  const policies = compilePolicies(snapshot, { trustDomain: defaultScale.trustDomain });
  assert.deepEqual(policies.problems, []);
  const plan = policies.index.plans.get(set.loadIdentity.spiffeId);
  assert.ok(plan, 'the load identity has a plan');
  const limiter = createLimiterState();
  const peer = { spiffeId: set.loadIdentity.spiffeId, namespace: set.loadIdentity.namespace, name: set.loadIdentity.name, serial: '01' };
  return set.mix.map((entry) => {
    const request = toHttpAttributes(entry.request, { maxBodyBytes: 1 << 20 });
    if (isMalformed(request)) return { effect: 'Deny', reason: `malformed: ${request.message}` };
    const c = classify(tools.index, peer.namespace, request, { maxBodyBytes: 1 << 20 });
    if (!c.ok) return { effect: 'Deny', reason: c.reason };
    const d = decide(plan, { peer, request, classified: c.classified, now: new Date(), killSwitch: { global: false, namespaces: [] } }, limiter);
    return { effect: d.effect, reason: d.reason, ...(d.rule ? { policy: d.rule.policy } : {}) };
  });
}

describe('scale (generated tools only)', () => {
  const set = scale({ tools: [], secrets: [] });

  it('has 100 identities and exactly 1,000 rules', () => {
    assert.equal(set.identities.length, 100);
    assert.equal(set.summary.rules, 1000);
    assert.equal(set.policies.reduce((n, p) => n + p.spec.rules.length, 0), 1000);
    assert.equal(new Set(set.identities.map((i) => i.metadata.name)).size, 100);
    assert.equal(set.summary.exampleTools, 0);
    assert.ok(set.tools.length >= defaultScale.minTools);
    for (const p of set.policies) assert.equal(new Set(p.spec.rules.map((r) => r.name)).size, p.spec.rules.length, `${p.metadata.name} has unique rule names`);
  });

  it('builds a mix of the promised size and shares, spread over the sequence', () => {
    assert.equal(set.mix.length, defaultScale.mixSize);
    for (const [category, weight] of Object.entries(mixWeights)) assert.equal(set.summary.mix[category as MixCategory], weight, category);
    assert.equal(set.summary.expectAllow, 70);
    assert.ok(set.summary.mcpRequests >= 15);
    // Interleaved: no category runs longer than a few messages in a row.
    let longest = 0;
    let run = 0;
    set.mix.forEach((e, i) => {
      run = i > 0 && set.mix[i - 1]!.category === e.category ? run + 1 : 1;
      longest = Math.max(longest, run);
    });
    assert.ok(longest <= 3, `longest run of one category is ${longest}`);
  });

  it('passes Mandate manifest validation and compiles without problems', async () => {
    const snapshot = await snapshotOf(set, 'generated');
    const policies = compilePolicies(snapshot, { trustDomain: defaultScale.trustDomain });
    assert.equal(policies.index.ruleCount, 1000);
    assert.equal(policies.index.plans.size, 100);
  });

  it('decides every mix message as its category says, for the intended reason', async () => {
    const outcomes = decideAll(set, await snapshotOf(set, 'decide'));
    const reasons: Record<MixCategory, (o: Outcome) => boolean> = {
      read: (o) => o.effect === 'Allow',
      write: (o) => o.effect === 'Allow',
      mcp: (o) => o.effect === 'Allow',
      'guardrail-deny': (o) => o.effect === 'Deny' && o.reason === 'rule' && o.policy === `${defaultScale.namespace}/fleet-guardrails`,
      'condition-deny': (o) => o.effect === 'Deny' && o.reason === 'default-deny',
      'default-deny': (o) => o.effect === 'Deny' && o.reason === 'default-deny',
      'mcp-deny': (o) => o.effect === 'Deny' && o.reason === 'default-deny',
      'unknown-host': (o) => o.effect === 'Deny' && o.reason === 'unknown-destination',
    };
    const wrong = set.mix.map((e, i) => ({ category: e.category, action: e.action, outcome: outcomes[i]! })).filter((x) => !reasons[x.category](x.outcome));
    assert.deepEqual(wrong, []);
  });

  it('writes requests that are valid Envoy CheckRequests, in ghz data form', async () => {
    const { CheckRequest } = authProtoTypes();
    for (const entry of set.mix) assert.doesNotThrow(() => encodeStrict(CheckRequest, entry.request, 'json'));
    const file = join(dir, 'load.json');
    await writeLoadData(file, set);
    const data = JSON.parse(await readFile(file, 'utf8')) as unknown[];
    assert.equal(data.length, set.mix.length);
    assert.deepEqual(data[0], set.mix[0]!.request);
  });
});

describe('scale with example tools', () => {
  const example: AgentTool = {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentTool',
    metadata: { name: 'github', namespace: 'demo' },
    spec: {
      hosts: ['*.github.example'],
      credential: { secretRef: { name: 'github-token', key: 'token' } },
      actions: [
        { name: 'github.repo.get', http: { method: 'GET', path: '/repos/{owner}/{repo}' } },
        { name: 'github.pr.merge', reversible: false, http: { method: 'PUT', path: '/repos/{owner}/{repo}/pulls/{number}/merge' } },
      ],
    },
  };

  it('reads tools and Secrets from a folder, rewrites their namespace and keeps the totals', async () => {
    const folder = join(dir, 'examples');
    await writeScaledSet(folder, { ...scale({ tools: [], secrets: [] }), tools: [example], secrets: [], identities: [], policies: [] });
    await writeFile(join(folder, 'secret.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: github-token, namespace: demo}\nstringData: {token: t0ps3cret}\n');
    await writeFile(join(folder, 'broken.yaml'), 'kind: [unclosed\n');
    const read = await readExampleManifests(folder);
    assert.equal(read.tools.length, 1);
    assert.equal(read.secrets.length, 1);
    assert.equal(read.skipped.length, 1);

    const set = scale(read);
    assert.equal(set.summary.exampleTools, 1);
    assert.equal(set.summary.rules, 1000);
    const github = set.tools.find((t) => t.metadata.name === 'github');
    assert.equal(github?.metadata.namespace, defaultScale.namespace);
    assert.deepEqual(set.secrets.find((s) => s.metadata.name === 'github-token')?.stringData, { token: 't0ps3cret' });
    const outcomes = decideAll(set, await snapshotOf(set, 'with-examples'));
    set.mix.forEach((e, i) => assert.equal(outcomes[i]!.effect === 'Allow', e.expect === 'allow', `${e.category} ${e.action ?? ''}: ${JSON.stringify(outcomes[i])}`));
  });

  it('reads nothing from a folder that does not exist', async () => {
    const read = await readExampleManifests(join(dir, 'absent'));
    assert.deepEqual([read.tools.length, read.secrets.length, read.files], [0, 0, 0]);
  });

  it('refuses a rule total too small for the identities', () => {
    assert.throws(() => scale({ tools: [], secrets: [] }, { ...defaultScale, rules: 300 }), /at least 7 own rules/);
    const small = scale({ tools: [], secrets: [] }, { ...defaultScale, identities: 10, rules: 200, teams: 2 });
    assert.equal(small.summary.rules, 200);
    assert.equal(small.identities.length, 10);
  });
});
