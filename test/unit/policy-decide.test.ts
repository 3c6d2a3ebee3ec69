import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentIdentity, AgentPolicy, PolicyRule } from '../../crds/generated/types.ts';
import type { Decision, HttpRequestAttributes, PeerIdentity } from '../../controller/src/authz/types.ts';
import { compilePolicies } from '../../controller/src/policy/compile.ts';
import { decide, gate, type KillSwitch } from '../../controller/src/policy/decide.ts';
import { LimiterState, createLimiterState } from '../../controller/src/policy/limits.ts';
import type { PolicyIndex } from '../../controller/src/policy/types.ts';
import { TRUST_DOMAIN, classified, identity, peer, policy, request, snapshot, spiffe, tool } from './policy-fixtures.ts';

const NOW = new Date('2025-01-06T10:00:00Z'); // a Monday
const OFF: KillSwitch = { global: false, namespaces: [] };
const ghTool = tool('agents', 'github', ['github.pr.merge', 'github.pr.create', 'github.repo.delete', 'github.branch.delete', 'payments.charge']);

type Rule = PolicyRule;
const rule = (name: string, effect: Rule['effect'], actions: string[], extra: Partial<Rule> = {}): Rule =>
  ({ name, effect, actions: actions as [string, ...string[]], ...extra });

function indexOf(policies: AgentPolicy[], identities: AgentIdentity[] = [identity('agents', 'agent')]): PolicyIndex {
  const { index, problems } = compilePolicies(snapshot({ identities, policies, tools: [ghTool] }), { trustDomain: TRUST_DOMAIN });
  assert.deepEqual(problems, []);
  return index;
}

interface Call {
  action?: string;
  params?: Record<string, unknown>;
  now?: Date;
  killSwitch?: KillSwitch;
  peer?: PeerIdentity;
  request?: Partial<HttpRequestAttributes>;
}

function run(index: PolicyIndex, limits: LimiterState, call: Call = {}): Decision {
  const who = call.peer ?? peer('agents', 'agent');
  return decide(
    index.plans.get(who.spiffeId),
    {
      peer: who,
      request: request(call.request),
      classified: classified(call.action ?? 'github.pr.merge', call.params ?? {}),
      now: call.now ?? NOW,
      killSwitch: call.killSwitch ?? OFF,
    },
    limits,
  );
}

const once = (policies: AgentPolicy[], call: Call = {}): Decision => run(indexOf(policies), createLimiterState(), call);

describe('decide: precedence', () => {
  const denyR = rule('deny-merge', 'Deny', ['github.pr.merge']);
  const approveR = rule('approve-merge', 'RequireApproval', ['github.pr.*']);
  const allowR = rule('allow-github', 'Allow', ['github.**']);

  // Every combination of matching Deny / RequireApproval / Allow rules.
  for (const [d, r, a] of [
    [true, true, true],
    [true, true, false],
    [true, false, true],
    [true, false, false],
    [false, true, true],
    [false, true, false],
    [false, false, true],
    [false, false, false],
  ] as const) {
    it(`deny=${d} approval=${r} allow=${a}`, () => {
      const rules = [...(a ? [allowR] : []), ...(r ? [approveR] : []), ...(d ? [denyR] : [])];
      const decision = once([policy('agents', 'p', rules.length ? rules : [rule('other', 'Allow', ['github.repo.delete'])])]);
      if (d) {
        assert.equal(decision.effect, 'Deny');
        assert.equal(decision.reason, 'rule');
        assert.equal(decision.rule?.rule, 'deny-merge');
        assert.equal(decision.httpStatus, 403);
        assert.equal(decision.message, 'github.pr.merge is denied by agents/p rule deny-merge');
      } else if (r) {
        assert.equal(decision.effect, 'RequireApproval');
        assert.equal(decision.reason, 'rule');
        assert.equal(decision.rule?.rule, 'approve-merge');
        assert.equal(decision.httpStatus, 403);
        assert.match(decision.message, /needs human approval under agents\/p rule approve-merge/);
      } else if (a) {
        assert.equal(decision.effect, 'Allow');
        assert.equal(decision.reason, 'rule');
        assert.deepEqual(decision.rule, { policy: 'agents/p', generation: 1, rule: 'allow-github' });
        assert.equal(decision.httpStatus, 200);
      } else {
        assert.equal(decision.effect, 'Deny');
        assert.equal(decision.reason, 'default-deny');
        assert.equal(decision.rule, undefined);
        assert.equal(decision.httpStatus, 403);
        assert.equal(decision.message, 'no policy rule allows github.pr.merge for agents/agent');
      }
    });
  }

  it('lets a Deny in one policy beat an Allow in another', () => {
    const decision = once([
      policy('agents', 'a-allow', [rule('allow-all', 'Allow', ['**'])]),
      policy('agents', 'z-deny', [rule('no-deletes', 'Deny', ['**.delete'])]),
    ], { action: 'github.branch.delete' });
    assert.equal(decision.effect, 'Deny');
    assert.deepEqual(decision.rule, { policy: 'agents/z-deny', generation: 1, rule: 'no-deletes' });
  });

  it('names the first matching Allow rule in policy-then-rule order', () => {
    const decision = once([
      policy('agents', 'b', [rule('b-first', 'Allow', ['github.**'])]),
      policy('agents', 'a', [rule('a-narrow', 'Allow', ['github.repo.*']), rule('a-wide', 'Allow', ['github.**'])]),
    ]);
    assert.equal(decision.rule?.policy, 'agents/a');
    assert.equal(decision.rule?.rule, 'a-wide');
  });

  it('applies a rule only when its condition holds', () => {
    const policies = [
      policy('agents', 'p', [
        rule('big-charges', 'Deny', ['payments.charge'], { when: 'params.amount > 1000' }),
        rule('charges', 'Allow', ['payments.charge']),
      ]),
    ];
    assert.equal(once(policies, { action: 'payments.charge', params: { amount: 1500 } }).effect, 'Deny');
    assert.equal(once(policies, { action: 'payments.charge', params: { amount: 1000.5 } }).effect, 'Deny');
    assert.equal(once(policies, { action: 'payments.charge', params: { amount: 1000 } }).effect, 'Allow');
  });

  it('applies a rule only inside its schedule', () => {
    const policies = [
      policy('agents', 'p', [
        rule('office-hours', 'Allow', ['github.**'], { schedule: { timeZone: 'Europe/Berlin', days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri'], start: '09:00', end: '17:00' } }),
      ]),
    ];
    assert.equal(once(policies, { now: new Date('2025-01-06T10:00:00Z') }).effect, 'Allow'); // Mon 11:00 local
    assert.equal(once(policies, { now: new Date('2025-01-06T17:00:00Z') }).reason, 'default-deny'); // Mon 18:00 local
    assert.equal(once(policies, { now: new Date('2025-01-11T10:00:00Z') }).reason, 'default-deny'); // Saturday
  });
});

describe('decide: gates before rules', () => {
  const policies = [policy('agents', 'p', [rule('allow', 'Allow', ['**'])]), policy('agents', 'dry', [rule('d', 'Deny', ['**'])], { mode: 'DryRun' })];

  it('stops everything under the global kill switch, even unknown identities', () => {
    const index = indexOf(policies);
    const d = run(index, createLimiterState(), { killSwitch: { global: true, namespaces: [] } });
    assert.equal(d.effect, 'Deny');
    assert.equal(d.reason, 'kill-switch');
    assert.equal(d.httpStatus, 403);
    assert.deepEqual(d.dryRun, [{ policy: 'agents/dry', effect: 'Deny', reason: 'kill-switch' }]);
    const stranger = run(index, createLimiterState(), { killSwitch: { global: true, namespaces: [] }, peer: peer('agents', 'nobody') });
    assert.equal(stranger.reason, 'kill-switch');
  });

  it('stops only the named namespaces under a namespace kill switch', () => {
    const index = indexOf(policies, [identity('agents', 'agent'), identity('other', 'agent')]);
    const killSwitch = { global: false, namespaces: ['other'] };
    assert.equal(run(index, createLimiterState(), { killSwitch }).effect, 'Allow');
    const stopped = run(index, createLimiterState(), { killSwitch, peer: peer('other', 'agent') });
    assert.equal(stopped.reason, 'kill-switch');
    assert.match(stopped.message, /namespace other/);
  });

  it('denies an identity without a plan, or with a plan for someone else', () => {
    const index = indexOf(policies);
    const unknown = run(index, createLimiterState(), { peer: peer('agents', 'ghost') });
    assert.equal(unknown.effect, 'Deny');
    assert.equal(unknown.reason, 'unknown-identity');
    assert.equal(unknown.httpStatus, 403);
    assert.deepEqual(unknown.dryRun, []);
    const mismatch = decide(
      index.plans.get(spiffe('agents', 'agent')),
      { peer: peer('agents', 'ghost'), request: request(), classified: classified('github.pr.merge'), now: NOW, killSwitch: OFF },
      createLimiterState(),
    );
    assert.equal(mismatch.reason, 'unknown-identity');
  });

  it('denies a suspended identity before any rule', () => {
    const index = indexOf(policies, [identity('agents', 'agent', { spec: { suspended: true } })]);
    const d = run(index, createLimiterState());
    assert.equal(d.effect, 'Deny');
    assert.equal(d.reason, 'suspended');
    assert.equal(d.message, 'agent identity agents/agent is suspended');
    assert.deepEqual(d.dryRun, [{ policy: 'agents/dry', effect: 'Deny', reason: 'suspended' }]);
  });

  it('treats an expired identity as suspended, from the moment of expiry', () => {
    const index = indexOf(policies, [identity('agents', 'agent', { spec: { expiresAt: '2025-01-06T10:00:00Z' } })]);
    assert.equal(run(index, createLimiterState(), { now: new Date('2025-01-06T09:59:59.999Z') }).effect, 'Allow');
    const expired = run(index, createLimiterState(), { now: new Date('2025-01-06T10:00:00Z') });
    assert.equal(expired.reason, 'suspended');
    assert.match(expired.message, /expired at 2025-01-06T10:00:00.000Z/);
  });
});

describe('decide: conditions fail closed', () => {
  it('counts a failing Deny condition as matched', () => {
    const d = once([policy('agents', 'p', [rule('big', 'Deny', ['**'], { when: 'params.amount > 1000' }), rule('all', 'Allow', ['**'])])], { params: {} });
    assert.equal(d.effect, 'Deny');
    assert.equal(d.rule?.rule, 'big');
    assert.match(d.message, /could not be evaluated, which counts as a match/);
    assert.equal(d.conditionErrors?.length, 1);
    assert.equal(d.conditionErrors?.[0]?.rule.rule, 'big');
    assert.match(d.conditionErrors?.[0]?.message ?? '', /amount/);
  });

  it('counts a failing RequireApproval condition as matched', () => {
    const d = once([policy('agents', 'p', [rule('ask', 'RequireApproval', ['**'], { when: 'params.branch == "main"' }), rule('all', 'Allow', ['**'])])]);
    assert.equal(d.effect, 'RequireApproval');
    assert.match(d.message, /could not be evaluated/);
  });

  it('counts a failing Allow condition as not matched', () => {
    const d = once([policy('agents', 'p', [rule('small', 'Allow', ['**'], { when: 'params.amount < 100' })])], { params: { amount: 'ten' } });
    assert.equal(d.effect, 'Deny');
    assert.equal(d.reason, 'default-deny');
    assert.match(d.message, /the condition of agents\/p rule small could not be evaluated/);
    assert.equal(d.conditionErrors?.[0]?.rule.rule, 'small');
  });

  it('lets a later Allow rule allow when an earlier one fails', () => {
    const d = once([policy('agents', 'p', [rule('small', 'Allow', ['**'], { when: 'params.amount < 100' }), rule('fallback', 'Allow', ['**'])])]);
    assert.equal(d.effect, 'Allow');
    assert.equal(d.rule?.rule, 'fallback');
    assert.equal(d.conditionErrors?.length, 1);
  });
});

describe('decide: rate limits and budgets', () => {
  it('consumes capacity only when the call is allowed', () => {
    const index = indexOf([
      policy('agents', 'p', [
        rule('no-main', 'Deny', ['github.pr.merge'], { when: 'params.base == "main"' }),
        rule('merges', 'Allow', ['github.pr.merge'], { rateLimit: { requests: 1, per: '1m' } }),
      ]),
    ]);
    const limits = createLimiterState();
    for (let i = 0; i < 5; i++) assert.equal(run(index, limits, { params: { base: 'main' } }).effect, 'Deny');
    assert.equal(limits.size, 0);
    assert.equal(run(index, limits, { params: { base: 'dev' } }).effect, 'Allow');
    const limited = run(index, limits, { params: { base: 'dev' } });
    assert.equal(limited.effect, 'Deny');
    assert.equal(limited.reason, 'rate-limited');
    assert.equal(limited.httpStatus, 429);
    assert.equal(limited.rule?.rule, 'merges');
    assert.equal(limited.message, 'github.pr.merge is rate limited by agents/p rule merges: at most 1 per 1m');
    assert.ok(limited.retryAfterSeconds !== undefined && limited.retryAfterSeconds >= 60 && limited.retryAfterSeconds <= 64);
    // A minute and a slot later the capacity is back.
    assert.equal(run(index, limits, { params: { base: 'dev' }, now: new Date(NOW.getTime() + 64_000) }).effect, 'Allow');
  });

  it('applies the limits of every matching Allow rule, naming the exhausted one', () => {
    const index = indexOf([
      policy('agents', 'p', [
        rule('github', 'Allow', ['github.**']),
        rule('merge-cap', 'Allow', ['github.pr.merge'], { rateLimit: { requests: 2, per: '1h' } }),
        rule('off-hours-cap', 'Allow', ['github.**'], { rateLimit: { requests: 1, per: '1h' }, when: 'params.late == true' }),
      ]),
    ]);
    const limits = createLimiterState();
    assert.equal(run(index, limits).rule?.rule, 'github');
    const second = run(index, limits);
    assert.equal(second.effect, 'Allow');
    assert.equal(second.rule?.rule, 'github'); // the deciding rule is the first match; its limits come from all
    const third = run(index, limits);
    assert.equal(third.reason, 'rate-limited');
    assert.equal(third.rule?.rule, 'merge-cap');
    // Other actions are not covered by merge-cap.
    assert.equal(run(index, limits, { action: 'github.pr.create' }).effect, 'Allow');
    // A limited rule applies only when it matches: its condition is false above, true here.
    assert.equal(run(index, limits, { action: 'github.pr.create', params: { late: true } }).effect, 'Allow');
    const late = run(index, limits, { action: 'github.pr.create', params: { late: true } });
    assert.equal(late.reason, 'rate-limited');
    assert.equal(late.rule?.rule, 'off-hours-cap');
  });

  it('charges nothing when one of several limits refuses', () => {
    const index = indexOf([
      policy('agents', 'p', [
        rule('calls', 'Allow', ['payments.charge'], { rateLimit: { requests: 1, per: '1m' } }),
        rule('spend', 'Allow', ['payments.charge'], { budget: { param: 'amount', max: 100, per: '1h' } }),
      ]),
    ]);
    const limits = createLimiterState();
    const tooMuch = run(index, limits, { action: 'payments.charge', params: { amount: 150 } });
    assert.equal(tooMuch.reason, 'budget-exceeded');
    assert.equal(tooMuch.httpStatus, 429);
    assert.equal(tooMuch.retryAfterSeconds, undefined); // 150 never fits into 100
    assert.equal(run(index, limits, { action: 'payments.charge', params: { amount: 10 } }).effect, 'Allow');
    assert.equal(run(index, limits, { action: 'payments.charge', params: { amount: 10 } }).reason, 'rate-limited');
  });

  it('sums a budget over its window', () => {
    const index = indexOf([policy('agents', 'p', [rule('spend', 'Allow', ['payments.charge'], { budget: { param: 'payment.amount', max: 1000, per: '1h' } })])]);
    const limits = createLimiterState();
    const charge = (amount: unknown, now = NOW) => run(index, limits, { action: 'payments.charge', params: { payment: { amount } }, now });
    assert.equal(charge(600).effect, 'Allow');
    assert.equal(charge('300.50').effect, 'Allow');
    const over = charge(100);
    assert.equal(over.reason, 'budget-exceeded');
    assert.match(over.message, /exceeds the budget of agents\/p rule spend: payment.amount 100 is more than the 99.5 left of 1000 per 1h/);
    assert.equal(charge(99.5).effect, 'Allow');
    assert.equal(charge(100, new Date(NOW.getTime() + 3_600_000 + 225_000)).effect, 'Allow');
  });

  it('refuses a budgeted call without a usable amount', () => {
    const index = indexOf([policy('agents', 'p', [rule('spend', 'Allow', ['payments.charge'], { budget: { param: 'amount', max: 1000, per: '1h' } })])]);
    for (const params of [{}, { amount: -5 }, { amount: 'a lot' }, { amount: '' }, { amount: null }, { amount: [5] }]) {
      const d = run(index, createLimiterState(), { action: 'payments.charge', params });
      assert.equal(d.reason, 'budget-exceeded', JSON.stringify(params));
      assert.match(d.message, /does not carry as a non-negative number/);
    }
    // A flat dotted key works as well as a nested one.
    assert.equal(run(index, createLimiterState(), { action: 'payments.charge', params: { amount: 5 } }).effect, 'Allow');
  });

  it('keys instance limits by instance and identity limits by identity', () => {
    const index = indexOf(
      [
        policy('agents', 'p', [rule('per-pod', 'Allow', ['github.pr.create'], { rateLimit: { requests: 1, per: '1m', key: 'instance' } })], {
          targets: { identities: ['agent', 'other'] },
        }),
        policy('agents', 'q', [rule('per-agent', 'Allow', ['github.pr.merge'], { rateLimit: { requests: 1, per: '1m' } })], {
          targets: { identities: ['agent', 'other'] },
        }),
      ],
      [identity('agents', 'agent'), identity('agents', 'other')],
    );
    const limits = createLimiterState();
    const pod = (instance: string, action = 'github.pr.create', who = peer('agents', 'agent')) =>
      run(index, limits, { action, request: { sourceInstance: instance }, peer: who }).effect;
    assert.equal(pod('pod-a'), 'Allow');
    assert.equal(pod('pod-a'), 'Deny');
    assert.equal(pod('pod-b'), 'Allow');
    assert.equal(pod('pod-a', 'github.pr.merge'), 'Allow');
    assert.equal(pod('pod-b', 'github.pr.merge'), 'Deny'); // same identity, shared limit
    assert.equal(pod('pod-a', 'github.pr.merge', peer('agents', 'other')), 'Allow'); // another identity
  });

  it('denies when the limiter has no room for a new key', () => {
    const index = indexOf([policy('agents', 'p', [rule('capped', 'Allow', ['**'], { rateLimit: { requests: 10, per: '1m', key: 'instance' } })])]);
    const limits = new LimiterState({ maxKeys: 1 });
    assert.equal(run(index, limits, { request: { sourceInstance: 'a' } }).effect, 'Allow');
    const full = run(index, limits, { request: { sourceInstance: 'b' } });
    assert.equal(full.reason, 'rate-limited');
    assert.match(full.message, /no room/);
  });
});

describe('decide: DryRun', () => {
  it('reports what DryRun policies would decide without changing the decision', () => {
    const index = indexOf([
      policy('agents', 'enforced', [rule('allow', 'Allow', ['github.**'])]),
      policy('agents', 'dry-deny', [rule('no-merge', 'Deny', ['github.pr.merge'])], { mode: 'DryRun' }),
      policy('agents', 'dry-ask', [rule('ask', 'RequireApproval', ['github.**'])], { mode: 'DryRun' }),
      policy('agents', 'dry-none', [rule('other', 'Allow', ['github.repo.*'])], { mode: 'DryRun' }),
    ]);
    const d = run(index, createLimiterState());
    assert.equal(d.effect, 'Allow');
    assert.equal(d.rule?.policy, 'agents/enforced');
    assert.deepEqual(d.dryRun, [
      { policy: 'agents/dry-ask', effect: 'RequireApproval', reason: 'rule', rule: { policy: 'agents/dry-ask', generation: 1, rule: 'ask' } },
      { policy: 'agents/dry-deny', effect: 'Deny', reason: 'rule', rule: { policy: 'agents/dry-deny', generation: 1, rule: 'no-merge' } },
    ]);
    // agents/dry-none has no rule for github.pr.merge: not applicable, so no verdict at all.
    assert.ok(!d.dryRun.some((r) => r.policy === 'agents/dry-none'));
  });

  it('never lets a DryRun Allow allow, nor a DryRun Deny deny', () => {
    const allowOnlyDry = once([policy('agents', 'dry', [rule('allow', 'Allow', ['**'])], { mode: 'DryRun' })]);
    assert.equal(allowOnlyDry.effect, 'Deny');
    assert.equal(allowOnlyDry.reason, 'default-deny');
    assert.equal(allowOnlyDry.dryRun[0]?.effect, 'Allow');
  });

  it('keeps DryRun limits apart from enforced capacity', () => {
    const index = indexOf([
      policy('agents', 'enforced', [rule('merges', 'Allow', ['github.pr.merge'], { rateLimit: { requests: 2, per: '1m' } })]),
      policy('agents', 'trial', [rule('merges', 'Allow', ['github.pr.merge'], { rateLimit: { requests: 1, per: '1m' } })], { mode: 'DryRun' }),
    ]);
    const limits = createLimiterState();
    const results = [0, 1, 2].map(() => run(index, limits));
    assert.deepEqual(results.map((d) => d.effect), ['Allow', 'Allow', 'Deny']);
    assert.deepEqual(results.map((d) => d.dryRun[0]?.reason), ['rule', 'rate-limited', 'rate-limited']);
    assert.equal(results[2]?.reason, 'rate-limited');
  });

  it('keeps DryRun condition errors out of the enforced decision', () => {
    const d = once([
      policy('agents', 'enforced', [rule('allow', 'Allow', ['**'])]),
      policy('agents', 'dry', [rule('strict', 'Deny', ['**'], { when: 'params.missing == 1' })], { mode: 'DryRun' }),
    ]);
    assert.equal(d.effect, 'Allow');
    assert.equal(d.conditionErrors, undefined);
    assert.equal(d.dryRun[0]?.effect, 'Deny');
  });
});

describe('decide: output', () => {
  it('returns frozen plain data, classified request included', () => {
    const index = indexOf([policy('agents', 'p', [rule('allow', 'Allow', ['**'])]), policy('agents', 'dry', [rule('d', 'Deny', ['**'])], { mode: 'DryRun' })]);
    const d = run(index, createLimiterState(), { params: { nested: { list: [1, 2] } } });
    assert.ok(Object.isFrozen(d));
    assert.ok(Object.isFrozen(d.dryRun));
    assert.ok(Object.isFrozen(d.dryRun[0]));
    assert.ok(Object.isFrozen(d.rule));
    assert.ok(Object.isFrozen(d.classified?.params));
    assert.ok(Object.isFrozen((d.classified?.params.nested as { list: number[] }).list));
    assert.deepEqual(JSON.parse(JSON.stringify(d)), {
      effect: 'Allow',
      reason: 'rule',
      rule: { policy: 'agents/p', generation: 1, rule: 'allow' },
      message: 'github.pr.merge is allowed by agents/p rule allow',
      httpStatus: 200,
      classified: classified('github.pr.merge', { nested: { list: [1, 2] } }),
      dryRun: [{ policy: 'agents/dry', effect: 'Deny', reason: 'rule', rule: { policy: 'agents/dry', generation: 1, rule: 'd' } }],
    });
  });

  it('refuses an invalid decision time', () => {
    const index = indexOf([policy('agents', 'p', [rule('allow', 'Allow', ['**'])])]);
    assert.throws(() => run(index, createLimiterState(), { now: new Date(Number.NaN) }), /decision time/);
  });
});

describe('gate', () => {
  const policies = [policy('agents', 'p', [rule('allow', 'Allow', ['**'])]), policy('agents', 'dry', [rule('d', 'Deny', ['**'])], { mode: 'DryRun' })];

  it('passes an active identity through and stops the rest, with the same answers as decide', () => {
    const index = indexOf(policies, [identity('agents', 'agent'), identity('agents', 'paused', { spec: { suspended: true } })]);
    const input = (who: PeerIdentity, killSwitch: KillSwitch = OFF) => ({ peer: who, now: NOW, killSwitch });
    assert.equal(gate(index.plans.get(spiffe('agents', 'agent')), input(peer('agents', 'agent'))), undefined);
    const cases: [PeerIdentity, KillSwitch, string][] = [
      [peer('agents', 'agent'), { global: true, namespaces: [] }, 'kill-switch'],
      [peer('agents', 'agent'), { global: false, namespaces: ['agents'] }, 'kill-switch'],
      [peer('agents', 'ghost'), OFF, 'unknown-identity'],
      [peer('agents', 'paused'), OFF, 'suspended'],
    ];
    for (const [who, killSwitch, reason] of cases) {
      const gated = gate(index.plans.get(who.spiffeId), input(who, killSwitch));
      assert.ok(gated, reason);
      assert.equal(gated.reason, reason);
      assert.equal(gated.effect, 'Deny');
      assert.equal(gated.classified, undefined);
      assert.ok(Object.isFrozen(gated));
      const full = run(index, createLimiterState(), { peer: who, killSwitch });
      assert.equal(full.reason, gated.reason);
      assert.equal(full.message, gated.message);
      assert.deepEqual(full.dryRun, gated.dryRun);
    }
  });
});
