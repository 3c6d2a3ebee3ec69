import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CelAction,
  CelRequest,
  ConditionError,
  MAX_CONDITION_LENGTH,
  celIdentity,
  compileCondition,
  type CelContext,
} from '../../controller/src/policy/cel.ts';
import { unsafeRegexReason } from '../../controller/src/policy/regex.ts';
import { isMandateError } from '../../controller/src/errors.ts';
import { classified, identity, request, spiffe } from './policy-fixtures.ts';

function ctx(params: Record<string, unknown> = {}, over: { version?: string; now?: Date } = {}): CelContext {
  const id = identity('agents', 'github-agent', {
    labels: { team: 'payments', tier: 'gold' },
    spec: { trustLevel: 'high', ...(over.version ? { version: over.version } : {}) },
  });
  return {
    identity: celIdentity(id, spiffe('agents', 'github-agent')),
    request: new CelRequest(request({ query: { page: '2' }, headers: { 'x-request-source': 'ci' } })),
    action: new CelAction(classified('github.pr.merge', params, { reversible: true, classification: 'confidential' })),
    params,
    now: over.now ?? new Date('2025-01-06T10:00:00Z'),
  };
}

const run = (source: string, params: Record<string, unknown> = {}, over: { version?: string; now?: Date } = {}): boolean | ConditionError =>
  compileCondition(source).evaluate(ctx(params, over));

function compileError(source: string): string {
  try {
    compileCondition(source);
  } catch (err) {
    assert.ok(isMandateError(err, 'POLICY_COMPILE'), `expected POLICY_COMPILE, got ${String(err)}`);
    return err.message;
  }
  assert.fail(`"${source}" compiled`);
}

describe('CEL conditions', () => {
  it('compares JSON numbers with int and double literals naturally', () => {
    assert.equal(run('params.amount > 1000', { amount: 1500 }), true);
    assert.equal(run('params.amount > 1000', { amount: 1000.5 }), true);
    assert.equal(run('params.amount > 1000', { amount: 1000 }), false);
    assert.equal(run('params.amount > 1000', { amount: 999 }), false);
    assert.equal(run('params.amount == 1000', { amount: 1000 }), true);
    assert.equal(run('params.amount >= 1000.0', { amount: 1000 }), true);
    assert.equal(run('params.amount < 0', { amount: -0.5 }), true);
    assert.equal(run('params.amount * 1.5 > 1500.0', { amount: 1001 }), true);
    assert.equal(run('params.count in [1, 2, 3]', { count: 2 }), true);
  });

  it('sees identity, request, action and time', () => {
    assert.equal(run('identity.name == "github-agent" && identity.namespace == "agents"'), true);
    assert.equal(run('identity.spiffeId == "spiffe://cluster.local/ns/agents/agent/github-agent"'), true);
    assert.equal(run('identity.labels["team"] == "payments" && identity.trustLevel == "high"'), true);
    assert.equal(run('identity.owner.endsWith("@example.com")'), true);
    assert.equal(run('request.method == "POST" && request.host == "api.github.com" && request.path.startsWith("/repos/")'), true);
    assert.equal(run('request.query["page"] == "2" && request.headers["x-request-source"] == "ci"'), true);
    assert.equal(run('action.name == "github.pr.merge" && action.tool == "agents/github"'), true);
    assert.equal(run('action.reversible && action.classification == "confidential"'), true);
    assert.equal(run('now > timestamp("2025-01-01T00:00:00Z") && now < timestamp("2025-02-01T00:00:00Z")'), true);
    assert.equal(run('now.getDayOfWeek("Europe/Berlin") == 1'), true); // a Monday
  });

  it('lets has() test for optional parameters and identity fields', () => {
    assert.equal(run('has(params.amount)', {}), false);
    assert.equal(run('has(params.amount)', { amount: 5 }), true);
    assert.equal(run('!has(params.amount) || params.amount > 10', {}), true);
    assert.equal(run('has(params.amount) && params.amount > 10', {}), false);
    assert.equal(run('has(params.payment.amount)', { payment: { amount: 3 } }), true);
    assert.equal(run('has(identity.version)'), false);
    assert.equal(run('has(identity.version) && identity.version == "1.2.0"', {}, { version: '1.2.0' }), true);
    assert.equal(run('"team" in identity.labels && !("env" in identity.labels)'), true);
  });

  it('turns evaluation failures into ConditionError values, never exceptions', () => {
    const missing = run('params.amount > 1000', {});
    assert.ok(missing instanceof ConditionError);
    assert.match(missing.message, /amount/);
    const wrongType = run('params.amount > 1000', { amount: 'lots' });
    assert.ok(wrongType instanceof ConditionError);
    const notBool = run('params.flag', { flag: 'yes' });
    assert.ok(notBool instanceof ConditionError);
    assert.match(notBool.message, /not a bool/);
    assert.equal(run('params.flag', { flag: true }), true);
    // JSON numbers are doubles: arithmetic with an int literal has no overload and fails.
    const mixed = run('params.n + 1 > 1', { n: 1 });
    assert.ok(mixed instanceof ConditionError);
    assert.match(mixed.message, /overload/);
    const divide = run('int(params.n) / 0 == 1', { n: 1 });
    assert.ok(divide instanceof ConditionError);
    assert.match(divide.message, /division by zero/);
  });

  it('reports compile errors from CEL with the column', () => {
    assert.match(compileError('idenity.name == "x"'), /Unknown variable: idenity \(at column 1\)/);
    assert.match(compileError('identity.nmae == "x"'), /nmae/);
    assert.match(compileError('request.headers.foo == 1'), /overload/);
    assert.match(compileError('params.amount >'), /column/);
    assert.match(compileError('1 + 2'), /must evaluate to bool, not int/);
    assert.match(compileError('"a"'), /not string/);
    assert.match(compileError(''), /empty/);
    assert.match(compileError('true || '.repeat(600) + 'true'), new RegExp(`longer than ${MAX_CONDITION_LENGTH}`));
  });

  it('bounds pathological expressions', () => {
    assert.match(compileError(`${'('.repeat(100)}true${')'.repeat(100)}`), /depth|maxDepth|nest/i);
    assert.match(compileError(`params.x in [${Array.from({ length: 300 }, (_, i) => i).join(', ')}]`), /list|maxListElements/i);
    assert.match(compileError('params.a.all(x, params.a.all(y, params.a.all(z, x == y && y == z)))'), /nest at most 2/);
    // Two levels and chained comprehensions stay allowed.
    assert.equal(run('params.a.all(x, params.a.exists(y, x == y))', { a: [1, 2] }), true);
    assert.equal(run('params.a.filter(x, x > 1).map(x, x * 2.0).all(x, x > 2.0)', { a: [1, 2, 3] }), true);
  });

  it('only accepts literal, non-backtracking patterns in matches()', () => {
    assert.equal(run('params.branch.matches("^release/[0-9]+$")', { branch: 'release/12' }), true);
    assert.equal(run('params.branch.matches("^(?:feat|fix)/[a-z-]+$")', { branch: 'fix/typo' }), true);
    assert.match(compileError('params.branch.matches("^(a+)+$")'), /nested or alternating repetition/);
    assert.match(compileError('params.branch.matches("^(a|aa)*$")'), /nested or alternating repetition/);
    assert.match(compileError('params.branch.matches(params.pattern)'), /string literal/);
    assert.match(compileError('params.branch.matches("(a)\\\\1")'), /backreferences/);
    assert.match(compileError('params.branch.matches("[")'), /invalid regular expression/);
  });
});

describe('regex guard', () => {
  it('accepts ordinary patterns', () => {
    for (const ok of ['^main$', '^release/[0-9]+$', '[a-z]+@example\\.com', '^(ab)+$', '^(?:x|y)$', '(a+)?', 'a{2,5}', '[(+*]+', '^(?<v>v[0-9]+)$']) {
      assert.equal(unsafeRegexReason(ok), undefined, ok);
    }
  });
  it('refuses nested and alternating repetition and backreferences', () => {
    for (const bad of ['(a+)+', '(a*)*', '(a|b)*', '(?:a+)+', '((a)+)*', '(a?)+', '(a{1,3}){2,}', '(x+x+)+y', '(a)\\1', '(?<n>a)\\k<n>']) {
      assert.notEqual(unsafeRegexReason(bad), undefined, bad);
    }
  });
});
