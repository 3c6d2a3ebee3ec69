// The decision for one classified request, from an identity's compiled plan. Pure except for the
// limiter state it is handed (and the plan's candidate memo, which never changes an answer).
//
// Order: kill switch (global, namespace) → unknown identity → suspended or expired → Deny rules →
// RequireApproval rules → Allow rules (with their rate limits and budgets) → default deny.
// A rule matches when one of its globs matches the action, its schedule (if any) contains `now`
// and its `when` (if any) is true. A `when` that fails to evaluate fails closed: it counts as
// matched for Deny and RequireApproval, as not matched for Allow.
import type {
  Classified,
  ConditionFailure,
  Decision,
  DecisionReason,
  DryRunResult,
  Effect,
  HttpRequestAttributes,
  PeerIdentity,
  RuleRef,
} from '../authz/types.ts';
import { MandateError } from '../errors.ts';
import { CelAction, CelRequest, ConditionError, type CelContext } from './cel.ts';
import type { Charge, LimiterState } from './limits.ts';
import type { CompiledRule, IdentityPlan, RuleSet } from './types.ts';

export interface KillSwitch {
  readonly global: boolean;
  readonly namespaces: readonly string[];
}

export interface DecideInput {
  readonly peer: PeerIdentity;
  readonly request: HttpRequestAttributes;
  readonly classified: Classified;
  readonly now: Date;
  readonly killSwitch: KillSwitch;
}

const NUMERIC_TEXT = /^[0-9]+(\.[0-9]+)?$/;

/** One rule set's verdict, before it becomes a Decision or a DryRunResult. */
interface Verdict {
  readonly effect: Effect;
  readonly reason: DecisionReason;
  readonly rule?: RuleRef;
  readonly message: string;
  readonly httpStatus: number;
  readonly retryAfterMs?: number;
}

/** Per-call evaluation state shared by the enforced and the DryRun rule sets. */
class Evaluation {
  readonly plan: IdentityPlan;
  readonly input: DecideInput;
  readonly nowMs: number;
  private ctx: CelContext | undefined;

  constructor(plan: IdentityPlan, input: DecideInput, nowMs: number) {
    this.plan = plan;
    this.input = input;
    this.nowMs = nowMs;
  }

  /** The CEL variables, built on first use: many calls are decided without any `when`. */
  context(): CelContext {
    this.ctx ??= {
      identity: this.plan.cel,
      request: new CelRequest(this.input.request),
      action: new CelAction(this.input.classified),
      params: this.input.classified.params,
      now: this.input.now,
    };
    return this.ctx;
  }
}

/** Whether the rule applies; records a condition failure and applies the fail-closed rule. */
function applies(rule: CompiledRule, ev: Evaluation, failures: ConditionFailure[]): boolean {
  if (rule.schedule && !rule.schedule.contains(ev.input.now)) return false;
  if (!rule.when) return true;
  const result = rule.when.evaluate(ev.context());
  if (result instanceof ConditionError) {
    failures.push(Object.freeze({ rule: rule.ref, message: result.message }));
    return rule.effect !== 'Allow';
  }
  return result;
}

function failedCondition(rule: CompiledRule, failures: readonly ConditionFailure[]): boolean {
  return failures.some((f) => f.rule === rule.ref);
}

function evaluate(rules: RuleSet, ev: Evaluation, limits: LimiterState, failures: ConditionFailure[]): Verdict {
  const action = ev.input.classified.action;

  for (const rule of rules.deny) {
    if (!applies(rule, ev, failures)) continue;
    const note = failedCondition(rule, failures) ? ': its condition could not be evaluated, which counts as a match for a Deny rule' : '';
    return { effect: 'Deny', reason: 'rule', rule: rule.ref, httpStatus: 403, message: `${action} is denied by ${rule.label}${note}` };
  }

  for (const rule of rules.requireApproval) {
    if (!applies(rule, ev, failures)) continue;
    // Seam for elevation (a later issue): an unused AgentElevation grant that matches the
    // request's hash is looked up here and, if present, lets the call continue to the Allow phase.
    const note = failedCondition(rule, failures)
      ? ' (its condition could not be evaluated, which counts as a match for a RequireApproval rule)'
      : '';
    return {
      effect: 'RequireApproval',
      reason: 'rule',
      rule: rule.ref,
      httpStatus: 403,
      message: `${action} needs human approval under ${rule.label}${note}; ask for an elevation to proceed`,
    };
  }

  // The first matching Allow rule decides; the limits of every matching Allow rule apply.
  let allowedBy: CompiledRule | undefined;
  const limited: CompiledRule[] = [];
  for (const rule of rules.allow) {
    const hasLimit = rule.rateLimit !== undefined || rule.budget !== undefined;
    if (allowedBy && !hasLimit) continue;
    if (!applies(rule, ev, failures)) continue;
    allowedBy ??= rule;
    if (hasLimit) limited.push(rule);
  }
  if (!allowedBy) {
    const skipped = rules.allow.filter((r) => failedCondition(r, failures)).map((r) => r.label);
    const note = skipped.length > 0 ? `; the condition of ${skipped.join(', ')} could not be evaluated, so it did not allow the call` : '';
    return {
      effect: 'Deny',
      reason: 'default-deny',
      httpStatus: 403,
      message: `no policy rule allows ${action} for ${ev.plan.namespace}/${ev.plan.name}${note}`,
    };
  }

  const charges: Charge[] = [];
  for (const rule of limited) {
    const verdict = chargeLimits(rule, ev, limits, charges);
    if (verdict) return verdict;
  }
  if (charges.length > 0 && !limits.commit(charges, ev.nowMs)) {
    return {
      effect: 'Deny',
      reason: 'rate-limited',
      rule: allowedBy.ref,
      httpStatus: 429,
      retryAfterMs: 1_000,
      message: `${action} is rate limited: the limiter has no room for another key (limits of ${allowedBy.label})`,
    };
  }
  return { effect: 'Allow', reason: 'rule', rule: allowedBy.ref, httpStatus: 200, message: `${action} is allowed by ${allowedBy.label}` };
}

/** Checks the rule's limits without consuming; adds its charges, or returns the deny verdict. */
function chargeLimits(rule: CompiledRule, ev: Evaluation, limits: LimiterState, charges: Charge[]): Verdict | undefined {
  const { peer, request, classified } = ev.input;
  const action = classified.action;
  if (rule.rateLimit) {
    const limit = rule.rateLimit;
    // The instance is the pod as Envoy's node id names it; the certificate serial stands in without one.
    const subject = limit.key === 'instance' ? `${peer.spiffeId}|${request.sourceInstance ?? peer.serial}` : peer.spiffeId;
    const key = `${rule.limiterKey}|rate|${subject}`;
    const check = limits.check(key, limit, 1, ev.nowMs);
    if (!check.ok) {
      const why = check.full
        ? 'the limiter has no room for another key'
        : `at most ${limit.requests} per ${limit.per}${limit.key === 'instance' ? ' per instance' : ''}`;
      return {
        effect: 'Deny',
        reason: 'rate-limited',
        rule: rule.ref,
        httpStatus: 429,
        retryAfterMs: check.retryAfterMs,
        message: `${action} is rate limited by ${rule.label}: ${why}`,
      };
    }
    charges.push({ key, spec: limit, weight: 1 });
  }
  if (rule.budget) {
    const budget = rule.budget;
    const amount = budgetAmount(classified.params, budget.param);
    if (amount === undefined) {
      return {
        effect: 'Deny',
        reason: 'budget-exceeded',
        rule: rule.ref,
        httpStatus: 429,
        message: `${action} is refused by ${rule.label}: its budget counts params.${budget.param}, which this call does not carry as a non-negative number`,
      };
    }
    const key = `${rule.limiterKey}|budget|${peer.spiffeId}`;
    const check = limits.check(key, budget, amount, ev.nowMs);
    if (!check.ok) {
      const why = check.full
        ? 'the limiter has no room for another key'
        : `${budget.param} ${amount} is more than the ${formatAmount(Math.max(0, budget.max - check.used))} left of ${formatAmount(budget.max)} per ${budget.per}`;
      return {
        effect: 'Deny',
        reason: 'budget-exceeded',
        rule: rule.ref,
        httpStatus: 429,
        retryAfterMs: check.retryAfterMs,
        message: `${action} exceeds the budget of ${rule.label}: ${why}`,
      };
    }
    charges.push({ key, spec: budget, weight: amount });
  }
  return undefined;
}

/** The parameter as a non-negative number: a JSON number or a plain decimal string. */
function budgetAmount(params: Readonly<Record<string, unknown>>, path: string): number | undefined {
  let value: unknown;
  if (Object.hasOwn(params, path)) {
    value = params[path];
  } else {
    value = params;
    for (const segment of path.split('.')) {
      if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, segment)) return undefined;
      value = (value as Record<string, unknown>)[segment];
    }
  }
  const amount = typeof value === 'number' ? value : typeof value === 'string' && NUMERIC_TEXT.test(value) ? Number(value) : Number.NaN;
  return Number.isFinite(amount) && amount >= 0 ? amount : undefined;
}

function formatAmount(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Math.round(n * 1e6) / 1e6);
}

export interface GateInput {
  readonly peer: PeerIdentity;
  readonly now: Date;
  readonly killSwitch: KillSwitch;
}

/**
 * The identity gates alone: kill switches, unknown identity, suspended or expired identity.
 * A Decision when one of them stops the call, else undefined. The check pipeline runs this
 * before classification, so a stopped identity learns nothing about destinations; decide()
 * applies the same gates itself.
 */
export function gate(plan: IdentityPlan | undefined, input: GateInput): Decision | undefined {
  const verdict = gateVerdict(plan, input, validTime(input.now));
  return verdict && finish(undefined, verdict, gatedDryRuns(plan, input.peer, verdict.reason), []);
}

/** The enforced decision and every DryRun policy's verdict for one call. */
export function decide(plan: IdentityPlan | undefined, input: DecideInput, limits: LimiterState): Decision {
  const nowMs = validTime(input.now);
  const { classified } = input;
  const gated = gateVerdict(plan, input, nowMs);
  if (gated || !plan) {
    const verdict = gated ?? unknownIdentity(input.peer);
    return finish(classified, verdict, gatedDryRuns(plan, input.peer, verdict.reason), []);
  }
  const candidates = plan.candidates(classified.action);
  const ev = new Evaluation(plan, input, nowMs);
  const failures: ConditionFailure[] = [];
  const verdict = evaluate(candidates.enforce, ev, limits, failures);
  const dryRun = candidates.dryRun.map((p): DryRunResult => {
    const v = evaluate(p.rules, ev, limits, []);
    return Object.freeze({ policy: p.policy, effect: v.effect, reason: v.reason, ...(v.rule ? { rule: v.rule } : {}) });
  });
  return finish(classified, verdict, dryRun, failures);
}

function validTime(now: Date): number {
  const nowMs = now.getTime();
  if (!Number.isFinite(nowMs)) throw new MandateError('INTERNAL', 'decision time is not a valid date');
  return nowMs;
}

function gateVerdict(plan: IdentityPlan | undefined, input: GateInput, nowMs: number): Verdict | undefined {
  const { peer, killSwitch } = input;
  if (killSwitch.global) {
    return { effect: 'Deny', reason: 'kill-switch', httpStatus: 403, message: 'all agent calls are stopped by the global kill switch' };
  }
  if (killSwitch.namespaces.includes(peer.namespace)) {
    return { effect: 'Deny', reason: 'kill-switch', httpStatus: 403, message: `calls from namespace ${peer.namespace} are stopped by the namespace kill switch` };
  }
  // A plan for another SPIFFE ID is a caller bug; refusing is the fail-closed answer.
  if (!plan || plan.spiffeId !== peer.spiffeId) return unknownIdentity(peer);
  const who = `${plan.namespace}/${plan.name}`;
  if (plan.suspended) return { effect: 'Deny', reason: 'suspended', httpStatus: 403, message: `agent identity ${who} is suspended` };
  if (plan.expiresAtMs !== undefined && plan.expiresAtMs <= nowMs) {
    const when = Number.isFinite(plan.expiresAtMs) ? ` at ${new Date(plan.expiresAtMs).toISOString()}` : '';
    return { effect: 'Deny', reason: 'suspended', httpStatus: 403, message: `agent identity ${who} expired${when}` };
  }
  return undefined;
}

function unknownIdentity(peer: PeerIdentity): Verdict {
  return { effect: 'Deny', reason: 'unknown-identity', httpStatus: 403, message: `no AgentIdentity exists for ${peer.spiffeId}` };
}

/** Under a gate every DryRun policy of the identity would have been stopped the same way. */
function gatedDryRuns(plan: IdentityPlan | undefined, peer: PeerIdentity, reason: DecisionReason): DryRunResult[] {
  if (!plan || plan.spiffeId !== peer.spiffeId) return [];
  return plan.dryRun.map((p) => Object.freeze({ policy: p.policy, effect: 'Deny' as const, reason }));
}

function finish(classified: Classified | undefined, verdict: Verdict, dryRun: DryRunResult[], failures: ConditionFailure[]): Decision {
  const decision: { -readonly [K in keyof Decision]: Decision[K] } = {
    effect: verdict.effect,
    reason: verdict.reason,
    message: verdict.message,
    httpStatus: verdict.httpStatus,
    dryRun: Object.freeze(dryRun),
  };
  if (classified) decision.classified = deepFreeze(classified);
  if (verdict.rule) decision.rule = verdict.rule;
  if (verdict.httpStatus === 429 && verdict.retryAfterMs) decision.retryAfterSeconds = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
  if (failures.length > 0) decision.conditionErrors = Object.freeze(failures);
  return Object.freeze(decision);
}

// Classified is plain JSON-like data; freezing it makes the Decision immutable all the way down.
// A frozen object is taken as frozen all the way down (classification may hand it over so).
function deepFreeze<T>(value: T, depth = 0): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value) || ArrayBuffer.isView(value) || depth > 64) return value;
  Object.freeze(value);
  for (const child of Object.values(value)) deepFreeze(child, depth + 1);
  return value;
}
