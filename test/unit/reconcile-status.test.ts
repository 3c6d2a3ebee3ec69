import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentIdentity, AgentPolicy, AgentTool, Condition } from '../../crds/generated/types.ts';
import { compileSnapshot, type Compiled } from '../../controller/src/authz/compiled.ts';
import type { PublishedSnapshot, SecretObject, Snapshot } from '../../controller/src/store/snapshot.ts';
import {
  desiredStatus,
  identityStatus,
  ownedStatusOf,
  policyStatus,
  statusContext,
  statusEqual,
  statusEvents,
  statusFingerprint,
  toolStatus,
  type OwnedStatus,
} from '../../controller/src/reconcile/status.ts';
import { TRUST_DOMAIN, identity, policy, snapshot, tool } from './policy-fixtures.ts';

const NOW = new Date('2025-06-01T12:00:00.000Z');
const allow = (name: string, actions: string[], extra: object = {}) => ({ name, effect: 'Allow' as const, actions: actions as [string, ...string[]], ...extra });
const deny = (name: string, actions: string[], extra: object = {}) => ({ name, effect: 'Deny' as const, actions: actions as [string, ...string[]], ...extra });

/** Gives every object a uid and generation, as the API server does. */
function stamped<T extends AgentIdentity | AgentPolicy | AgentTool>(obj: T, generation = 1): T {
  return { ...obj, metadata: { ...obj.metadata, uid: `uid-${obj.kind}-${obj.metadata.namespace}-${obj.metadata.name}`, generation, resourceVersion: '10' } };
}

function publish(parts: Parameters<typeof snapshot>[0], secrets: SecretObject[] = []): { published: PublishedSnapshot<Compiled>; problems: ReturnType<typeof compileSnapshot>['problems'] } {
  const base = snapshot({
    identities: parts.identities?.map((o) => stamped(o)),
    policies: parts.policies?.map((o) => stamped(o)),
    tools: parts.tools?.map((o) => stamped(o)),
  });
  const s: Snapshot = { ...base, secrets: new Map(secrets.map((x) => [`${x.metadata.namespace}/${x.metadata.name}`, x])) };
  const { compiled, problems } = compileSnapshot(s, TRUST_DOMAIN);
  return { published: { snapshot: s, compiled }, problems };
}

const cond = (status: OwnedStatus, type: string): Condition => {
  const c = status.conditions?.find((x) => x.type === type);
  assert.ok(c, `no ${type} condition`);
  return c;
};

const ghTool = tool('agents', 'github', ['github.pr.merge', 'github.pr.create']);

describe('status of an AgentIdentity', () => {
  test('bound: SPIFFE ID, bound policies, Ready=True with the generation it describes', () => {
    const { published, problems } = publish({
      identities: [identity('agents', 'agent')],
      policies: [policy('agents', 'b-policy', [allow('r', ['github.**'])]), policy('agents', 'a-policy', [deny('d', ['github.pr.merge'])])],
      tools: [ghTool],
    });
    assert.deepEqual(problems, []);
    const ctx = statusContext(published, problems, NOW);
    const obj = published.snapshot.identities.get('agents/agent');
    assert.ok(obj);
    const { status, requeueAfterMs } = identityStatus(obj, ctx);
    assert.equal(status.spiffeID, 'spiffe://cluster.local/ns/agents/agent/agent');
    assert.deepEqual(status.boundPolicies, ['a-policy', 'b-policy']);
    assert.equal(status.observedGeneration, 1);
    assert.deepEqual(cond(status, 'Ready'), {
      type: 'Ready',
      status: 'True',
      reason: 'Bound',
      message: 'bound by 2 policies: a-policy, b-policy',
      lastTransitionTime: '2025-06-01T12:00:00Z',
      observedGeneration: 1,
    });
    assert.equal(requeueAfterMs, undefined);
  });

  test('reasons: NoPolicies, Suspended, Expired, ParentMissing; a future expiry asks to look again then', () => {
    const { published, problems } = publish({
      identities: [
        identity('agents', 'lonely'),
        identity('agents', 'off', { spec: { suspended: true } }),
        identity('agents', 'old', { spec: { expiresAt: '2025-06-01T11:00:00Z' } }),
        identity('agents', 'soon', { spec: { expiresAt: '2025-06-01T13:00:00Z' } }),
        identity('agents', 'child', { spec: { parent: 'nobody' } }),
      ],
      policies: [policy('agents', 'p', [allow('r', ['github.**'])], { targets: { identities: ['off', 'old', 'soon', 'child'] } })],
      tools: [ghTool],
    });
    const ctx = statusContext(published, problems, NOW);
    const ready = (name: string): Condition => cond(identityStatus(published.snapshot.identities.get(`agents/${name}`) as AgentIdentity, ctx).status, 'Ready');
    assert.equal(ready('lonely').reason, 'NoPolicies');
    assert.match(ready('lonely').message ?? '', /no AgentPolicy in namespace agents targets this identity/);
    assert.deepEqual([ready('off').status, ready('off').reason], ['False', 'Suspended']);
    assert.deepEqual([ready('old').status, ready('old').reason], ['False', 'Expired']);
    assert.deepEqual([ready('soon').status, ready('soon').reason], ['True', 'Bound']);
    assert.deepEqual([ready('child').status, ready('child').reason], ['False', 'ParentMissing']);
    const soon = identityStatus(published.snapshot.identities.get('agents/soon') as AgentIdentity, ctx);
    assert.equal(soon.requeueAfterMs, 3_600_000 + 1000);
  });

  test('an object the store does not serve yet is Pending', () => {
    const { published, problems } = publish({ identities: [identity('agents', 'agent')] });
    const ctx = statusContext(published, problems, NOW);
    const newer = stamped(identity('agents', 'agent'), 2);
    const status = desiredStatus('AgentIdentity', newer, ctx).status;
    assert.equal(cond(status, 'Ready').reason, 'Pending');
    assert.equal(status.observedGeneration, 2);
  });
});

describe('status of an AgentPolicy', () => {
  test('compiled and enforced: rule count, bound identities, Compiled and Ready', () => {
    const { published, problems } = publish({
      identities: [identity('agents', 'agent'), identity('agents', 'other')],
      policies: [policy('agents', 'p', [allow('a', ['github.**']), deny('b', ['github.pr.merge'])], { targets: { identities: ['agent', 'other'] } })],
      tools: [ghTool],
    });
    const ctx = statusContext(published, problems, NOW);
    const { status } = policyStatus(published.snapshot.policies.get('agents/p') as AgentPolicy, ctx);
    assert.equal(status.ruleCount, 2);
    assert.deepEqual(status.boundIdentities, ['agent', 'other']);
    assert.equal(status.errors, undefined);
    assert.deepEqual([cond(status, 'Compiled').status, cond(status, 'Compiled').reason, cond(status, 'Compiled').message], ['True', 'Compiled', '2 rules compiled']);
    assert.deepEqual([cond(status, 'Ready').status, cond(status, 'Ready').reason], ['True', 'Enforced']);
  });

  test('DryRun and NoTargets; compile warnings show in the Compiled message', () => {
    const { published, problems } = publish({
      identities: [identity('agents', 'agent')],
      policies: [
        policy('agents', 'dry', [allow('a', ['github.**'])], { mode: 'DryRun' }),
        policy('agents', 'nobody', [allow('a', ['github.**'])], { targets: { identities: ['ghost'] } }),
      ],
      tools: [ghTool],
    });
    const ctx = statusContext(published, problems, NOW);
    const dry = policyStatus(published.snapshot.policies.get('agents/dry') as AgentPolicy, ctx).status;
    assert.deepEqual([cond(dry, 'Ready').status, cond(dry, 'Ready').reason], ['True', 'DryRun']);
    const nobody = policyStatus(published.snapshot.policies.get('agents/nobody') as AgentPolicy, ctx).status;
    assert.deepEqual([cond(nobody, 'Ready').status, cond(nobody, 'Ready').reason], ['False', 'NoTargets']);
    assert.match(cond(nobody, 'Compiled').message ?? '', /warning: \.spec\.targets\.identities\[0\]: no AgentIdentity "ghost"/);
  });

  test('compile errors name the rule and the field, in the condition and in status.errors', () => {
    const { published, problems } = publish({
      identities: [identity('agents', 'agent')],
      policies: [
        policy('agents', 'p', [
          allow('fine', ['github.**']),
          allow('refund-limit', ['github.**'], { when: 'params.amount >' }),
          deny('zone', ['github.**'], { schedule: { timeZone: 'Mars/Olympus' } }),
        ]),
      ],
      tools: [ghTool],
    });
    assert.equal(problems.length, 2);
    const ctx = statusContext(published, problems, NOW);
    const { status } = policyStatus(published.snapshot.policies.get('agents/p') as AgentPolicy, ctx);
    assert.deepEqual(
      status.errors?.map((e) => [e.rule, e.field]),
      [
        ['refund-limit', '.spec.rules[1].when'],
        ['zone', '.spec.rules[2].schedule.timeZone'],
      ],
    );
    const compiled = cond(status, 'Compiled');
    assert.equal(compiled.status, 'False');
    assert.equal(compiled.reason, 'CompileFailed');
    assert.match(compiled.message ?? '', /^rule "refund-limit" \.spec\.rules\[1\]\.when: .+; and 1 more problem \(see status\.errors\)$/);
    const ready = cond(status, 'Ready');
    assert.deepEqual([ready.status, ready.reason], ['False', 'CompileFailed']);
    assert.match(ready.message ?? '', /generation 1 does not compile/);
  });

  test('a broken new generation served at its last good one says which generation is enforced', () => {
    const good = policy('agents', 'p', [allow('a', ['github.**'])]);
    const { published } = publish({ identities: [identity('agents', 'agent')], policies: [good], tools: [ghTool] });
    const live = stamped(policy('agents', 'p', [allow('a', ['github.**'], { when: 'params.x ==' })]), 2);
    const problems = [{ object: 'AgentPolicy agents/p', field: '.spec.rules[0].when', message: 'syntax error' }];
    const { status } = policyStatus(live, statusContext(published, problems, NOW));
    assert.equal(status.observedGeneration, 2);
    assert.equal(cond(status, 'Compiled').message, 'rule "a" .spec.rules[0].when: syntax error');
    assert.match(cond(status, 'Ready').message ?? '', /generation 2 does not compile.*generation 1, the last that compiled, is enforced instead/);
  });
});

describe('status of an AgentTool', () => {
  test('serving: action count and hosts', () => {
    const { published, problems } = publish({ tools: [ghTool] });
    const { status } = toolStatus(published.snapshot.tools.get('agents/github') as AgentTool, statusContext(published, problems, NOW));
    assert.equal(status.actionCount, 2);
    assert.deepEqual([cond(status, 'Ready').status, cond(status, 'Ready').reason, cond(status, 'Ready').message], ['True', 'Serving', 'serves 2 actions on github.example.com']);
  });

  test('SecretMissing and HostConflict are told apart from other mistakes', () => {
    const withCredential: AgentTool = { ...tool('agents', 'pay', ['pay.refund']), spec: { ...tool('agents', 'pay', ['pay.refund']).spec, credential: { secretRef: { name: 'pay-token', key: 'token' } } } };
    const twin: AgentTool = { ...tool('agents', 'twin', ['twin.x']), spec: { ...tool('agents', 'twin', ['twin.x']).spec, hosts: ['github.example.com'] } };
    const { published, problems } = publish({ tools: [ghTool, withCredential, twin] });
    const ctx = statusContext(published, problems, NOW);
    const pay = toolStatus(published.snapshot.tools.get('agents/pay') as AgentTool, ctx).status;
    assert.deepEqual([cond(pay, 'Ready').status, cond(pay, 'Ready').reason], ['False', 'SecretMissing']);
    assert.equal(pay.actionCount, 0);
    assert.match(cond(pay, 'Ready').message ?? '', /serves no request until fixed: \.spec\.credential\.secretRef: Secret agents\/pay-token not found/);
    const gh = toolStatus(published.snapshot.tools.get('agents/github') as AgentTool, ctx).status;
    assert.equal(cond(gh, 'Ready').reason, 'HostConflict');
    assert.match(cond(gh, 'Ready').message ?? '', /also claimed by AgentTool agents\/twin/);
  });
});

describe('conditions over time', () => {
  const setup = () => {
    const { published, problems } = publish({ identities: [identity('agents', 'agent')], policies: [policy('agents', 'p', [allow('a', ['github.**'])])], tools: [ghTool] });
    return { published, problems, obj: published.snapshot.identities.get('agents/agent') as AgentIdentity };
  };

  test('lastTransitionTime moves only when the status of a condition changes', () => {
    const { published, problems, obj } = setup();
    const first = identityStatus(obj, statusContext(published, problems, NOW)).status;
    const later = new Date(NOW.getTime() + 3_600_000);
    const withStatus = { ...obj, status: { ...first, instances: 3 } };
    // Same status, later: the time stays.
    const again = identityStatus(withStatus, statusContext(published, problems, later)).status;
    assert.equal(cond(again, 'Ready').lastTransitionTime, '2025-06-01T12:00:00Z');
    assert.ok(statusEqual(again, ownedStatusOf('AgentIdentity', withStatus.status)));
    // Same status, another message (a second policy binds it): the time stays too.
    const s1 = publish({
      identities: [identity('agents', 'agent')],
      policies: [policy('agents', 'p', [allow('a', ['github.**'])]), policy('agents', 'q', [allow('a', ['github.**'])])],
      tools: [ghTool],
    });
    const obj1 = { ...(s1.published.snapshot.identities.get('agents/agent') as AgentIdentity), status: withStatus.status };
    const twice = identityStatus(obj1, statusContext(s1.published, s1.problems, later)).status;
    assert.equal(cond(twice, 'Ready').message, 'bound by 2 policies: p, q');
    assert.equal(cond(twice, 'Ready').lastTransitionTime, '2025-06-01T12:00:00Z');
    // Suspended: Ready flips to False, the time moves.
    const s2 = publish({ identities: [identity('agents', 'agent', { spec: { suspended: true } })], policies: [policy('agents', 'p', [allow('a', ['github.**'])])], tools: [ghTool] });
    const obj2 = { ...(s2.published.snapshot.identities.get('agents/agent') as AgentIdentity), status: withStatus.status };
    const off = identityStatus(obj2, statusContext(s2.published, s2.problems, later)).status;
    assert.equal(cond(off, 'Ready').status, 'False');
    assert.equal(cond(off, 'Ready').lastTransitionTime, '2025-06-01T13:00:00Z');
  });

  test('only owned fields and conditions are compared; the fingerprint ignores transition times', () => {
    const { published, problems, obj } = setup();
    const desired = identityStatus(obj, statusContext(published, problems, NOW)).status;
    const current = {
      ...desired,
      instances: 7,
      lastIssuance: '2025-06-01T11:00:00Z',
      conditions: [...(desired.conditions ?? []), { type: 'Issuing', status: 'True' as const, reason: 'Fine' }],
    };
    const owned = ownedStatusOf('AgentIdentity', current);
    assert.equal((owned as Record<string, unknown>).instances, undefined);
    assert.deepEqual(owned.conditions?.map((c) => c.type), ['Ready']);
    assert.ok(statusEqual(desired, owned));
    const moved = { ...desired, conditions: desired.conditions?.map((c) => ({ ...c, lastTransitionTime: '2020-01-01T00:00:00Z' })) };
    assert.equal(statusEqual(desired, moved), false);
    assert.equal(statusFingerprint(desired), statusFingerprint(moved));
    assert.ok(statusEqual({ ...desired }, { ...desired, errors: [] }), 'no errors and an empty list are the same');
  });
});

describe('events for status changes', () => {
  const compiled = (status: 'True' | 'False', reason: string, message: string): OwnedStatus => ({ conditions: [{ type: 'Compiled', status, reason, message }] });

  test('a Warning when a policy stops compiling or its error changes, nothing while it stays stuck', () => {
    const ok = compiled('True', 'Compiled', '2 rules compiled');
    const broken = compiled('False', 'CompileFailed', 'rule "a" .spec.rules[0].when: syntax error');
    assert.deepEqual(statusEvents('AgentPolicy', {}, broken), [{ type: 'Warning', reason: 'CompileFailed', note: 'rule "a" .spec.rules[0].when: syntax error' }]);
    assert.deepEqual(statusEvents('AgentPolicy', ok, broken).map((e) => e.type), ['Warning']);
    assert.deepEqual(statusEvents('AgentPolicy', broken, broken), []);
    const otherError = compiled('False', 'CompileFailed', 'rule "b" .spec.rules[1].when: no such field');
    assert.deepEqual(statusEvents('AgentPolicy', broken, otherError).map((e) => e.note), ['rule "b" .spec.rules[1].when: no such field']);
  });

  test('a Normal "Compiled" when a policy compiles again; none for first success or plain states', () => {
    const ok = compiled('True', 'Compiled', '2 rules compiled');
    const broken = compiled('False', 'CompileFailed', 'x');
    assert.deepEqual(statusEvents('AgentPolicy', broken, ok), [{ type: 'Normal', reason: 'Compiled', note: 'compiles again: 2 rules compiled' }]);
    assert.deepEqual(statusEvents('AgentPolicy', {}, ok), []);
    const noPolicies: OwnedStatus = { conditions: [{ type: 'Ready', status: 'False', reason: 'NoPolicies', message: 'm' }] };
    assert.deepEqual(statusEvents('AgentIdentity', {}, noPolicies), []);
    const secret: OwnedStatus = { conditions: [{ type: 'Ready', status: 'False', reason: 'SecretMissing', message: 'Secret a/b not found' }] };
    assert.deepEqual(statusEvents('AgentTool', {}, secret).map((e) => `${e.type}/${e.reason}`), ['Warning/SecretMissing']);
  });
});
