// Compiled policy shapes: what compilePolicies produces and decide consumes. All of it is built
// once per snapshot and then only read; the one mutable part is each plan's candidate memo,
// a cache that never changes an answer.
import type { AgentIdentity } from '../../../crds/generated/types.ts';
import type { Effect, Mode, RuleRef } from '../authz/types.ts';
import type { CelCondition, CelIdentity } from './cel.ts';
import type { ActionGlob } from './glob.ts';
import type { WindowSpec } from './limits.ts';
import type { CompiledSchedule } from './schedule.ts';

export interface CompiledRateLimit extends WindowSpec {
  readonly requests: number;
  readonly per: string;
  readonly key: 'identity' | 'instance';
}

export interface CompiledBudget extends WindowSpec {
  /** Dotted name of the numeric parameter, as written in the rule. */
  readonly param: string;
  readonly max: number;
  readonly per: string;
}

export interface CompiledRule {
  readonly ref: RuleRef;
  /** `namespace/policy rule name`, the form messages use. */
  readonly label: string;
  readonly effect: Effect;
  readonly mode: Mode;
  readonly globs: readonly ActionGlob[];
  readonly schedule?: CompiledSchedule;
  readonly when?: CelCondition;
  readonly rateLimit?: CompiledRateLimit;
  readonly budget?: CompiledBudget;
  /** Prefix of this rule's limiter keys: mode, policy and rule, so DryRun never shares Enforce capacity. */
  readonly limiterKey: string;
  /** Position of the rule in the whole index (policy order, then rule order); stable tie-break. */
  readonly order: number;
}

/** Rules of one mode for one identity, by effect, each in policy-then-rule order. */
export interface RuleSet {
  readonly deny: readonly CompiledRule[];
  readonly requireApproval: readonly CompiledRule[];
  readonly allow: readonly CompiledRule[];
}

export interface DryRunPolicy {
  /** `namespace/name`. */
  readonly policy: string;
  readonly rules: RuleSet;
}

/** The rules that can apply to one action name: the memoised answer of IdentityPlan.candidates. */
export interface Candidates {
  readonly enforce: RuleSet;
  readonly dryRun: readonly DryRunPolicy[];
}

export interface IdentityPlan {
  readonly spiffeId: string;
  readonly namespace: string;
  readonly name: string;
  readonly identity: AgentIdentity;
  readonly labels: Readonly<Record<string, string>>;
  /** The identity as CEL sees it, built once. */
  readonly cel: CelIdentity;
  readonly suspended: boolean;
  /** Epoch milliseconds of spec.expiresAt, if set. */
  readonly expiresAtMs?: number;
  /** `namespace/name` of every bound policy (both modes), sorted. */
  readonly policies: readonly string[];
  readonly enforce: RuleSet;
  readonly dryRun: readonly DryRunPolicy[];
  /** The rules whose globs match the action, memoised per action name (bounded); plans bound by
   * the same policies share one memo. */
  candidates(action: string): Candidates;
}

export interface PolicyIndex {
  readonly revision: number;
  readonly trustDomain: string;
  /** Keyed by SPIFFE ID. */
  readonly plans: ReadonlyMap<string, IdentityPlan>;
  /** `namespace/name` of each policy → names of the identities it binds, sorted (for status). */
  readonly bindings: ReadonlyMap<string, readonly string[]>;
  readonly ruleCount: number;
}
