// The desired .status of every AgentIdentity, AgentPolicy and AgentTool, computed from what the
// store published (the snapshot, its compiled index) and the problems found in each object. Pure:
// no clock of its own, no I/O. Only the fields the reconciler owns are produced; others (an
// identity's instances and lastIssuance, written by the identity service) are left alone, which
// server-side apply with field manager `mandate` relies on.
//
// Reasons are CamelCase words a human can grep for; messages point at the rule and field to fix.
import type { AgentIdentity, AgentPolicy, AgentTool, Condition } from '../../../crds/generated/types.ts';
import type { Compiled } from '../authz/compiled.ts';
import { spiffeIdFor } from '../policy/compile.ts';
import { objectLabel } from '../store/problems.ts';
import { objectKey, type ManifestProblem, type PublishedSnapshot, type Snapshot } from '../store/snapshot.ts';

export type ManagedKind = 'AgentIdentity' | 'AgentPolicy' | 'AgentTool';
export const managedKinds: readonly ManagedKind[] = Object.freeze(['AgentIdentity', 'AgentPolicy', 'AgentTool']);
export type ManagedObject = AgentIdentity | AgentPolicy | AgentTool;

export type PolicyError = NonNullable<NonNullable<AgentPolicy['status']>['errors']>[number];

/** The status fields the reconciler writes; everything else in .status belongs to others. */
export interface OwnedStatus {
  observedGeneration?: number;
  spiffeID?: string;
  boundPolicies?: string[];
  ruleCount?: number;
  boundIdentities?: string[];
  errors?: PolicyError[];
  actionCount?: number;
  conditions?: Condition[];
}

const OWNED_FIELDS: Readonly<Record<ManagedKind, readonly (keyof OwnedStatus)[]>> = {
  AgentIdentity: ['observedGeneration', 'spiffeID', 'boundPolicies', 'conditions'],
  AgentPolicy: ['observedGeneration', 'ruleCount', 'boundIdentities', 'errors', 'conditions'],
  AgentTool: ['observedGeneration', 'actionCount', 'conditions'],
};

export const OWNED_CONDITIONS: Readonly<Record<ManagedKind, readonly string[]>> = {
  AgentIdentity: ['Ready'],
  AgentPolicy: ['Compiled', 'Ready'],
  AgentTool: ['Ready'],
};

/** The condition whose problems become Warning events. */
const EVENT_CONDITION: Readonly<Record<ManagedKind, string>> = { AgentIdentity: 'Ready', AgentPolicy: 'Compiled', AgentTool: 'Ready' };

/** Reasons that mean "the object has a mistake in it" (Warning events), as opposed to a state. */
export const PROBLEM_REASONS: ReadonlySet<string> = new Set(['CompileFailed', 'Invalid', 'SecretMissing', 'HostConflict', 'ParentMissing']);

/** Longest condition message; the API allows 32 KiB, a reader wants a sentence or two. */
const MAX_MESSAGE = 1024;
/** Most entries in an AgentPolicy's status.errors. */
export const MAX_ERRORS = 50;
const MAX_NAMES_IN_MESSAGE = 10;

export interface StatusContext {
  readonly snapshot: Snapshot;
  readonly compiled: Compiled;
  /** Problems (blocking) and warnings (advisory) by object label, `Kind namespace/name`. */
  readonly problems: ReadonlyMap<string, readonly ManifestProblem[]>;
  readonly warnings: ReadonlyMap<string, readonly ManifestProblem[]>;
  /** `namespace/identity` → names of the policies binding it, sorted. */
  readonly policiesByIdentity: ReadonlyMap<string, readonly string[]>;
  readonly now: Date;
}

export interface DesiredStatus {
  readonly status: OwnedStatus;
  /** Look again after this long even if nothing changes (an identity's expiry). */
  readonly requeueAfterMs?: number;
}

function groupByObject(problems: readonly ManifestProblem[]): Map<string, ManifestProblem[]> {
  const out = new Map<string, ManifestProblem[]>();
  for (const p of problems) {
    const list = out.get(p.object);
    if (list) list.push(p);
    else out.set(p.object, [p]);
  }
  return out;
}

export function statusContext(published: PublishedSnapshot<Compiled>, problems: readonly ManifestProblem[], now: Date): StatusContext {
  const policiesByIdentity = new Map<string, string[]>();
  for (const [policyKey, identities] of published.compiled.policies.bindings) {
    const slash = policyKey.indexOf('/');
    const namespace = policyKey.slice(0, slash);
    const policy = policyKey.slice(slash + 1);
    for (const identity of identities) {
      const key = `${namespace}/${identity}`;
      const list = policiesByIdentity.get(key);
      if (list) list.push(policy);
      else policiesByIdentity.set(key, [policy]);
    }
  }
  for (const list of policiesByIdentity.values()) list.sort();
  return {
    snapshot: published.snapshot,
    compiled: published.compiled,
    problems: groupByObject(problems),
    warnings: groupByObject(published.compiled.warnings),
    policiesByIdentity,
    now,
  };
}

/** metav1.Time: RFC 3339 in UTC, whole seconds. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function clip(text: string, max = MAX_MESSAGE): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, MAX_NAMES_IN_MESSAGE).join(', ');
  return names.length > MAX_NAMES_IN_MESSAGE ? `${shown} and ${names.length - MAX_NAMES_IN_MESSAGE} more` : shown;
}

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

function condition(type: string, status: Condition['status'], reason: string, message: string, generation: number, previous: readonly Condition[] | undefined, now: Date): Condition {
  const before = previous?.find((c) => c.type === type);
  // The time of the last change of status, not of reason or message (Kubernetes API conventions).
  const lastTransitionTime = before && before.status === status && before.lastTransitionTime ? before.lastTransitionTime : rfc3339(now);
  return { type, status, reason, message: clip(message), lastTransitionTime, observedGeneration: generation };
}

const RULE_FIELD = /^\.spec\.rules\[(\d+)\]/;

/** The name of the rule a field path points into, when it does and the rule has a name. */
export function ruleNameOf(policy: AgentPolicy, field: string): string | undefined {
  const m = RULE_FIELD.exec(field);
  if (!m) return undefined;
  const rules: unknown = policy.spec?.rules;
  if (!Array.isArray(rules)) return undefined;
  const rule: unknown = rules[Number(m[1])];
  const name = rule && typeof rule === 'object' ? (rule as { name?: unknown }).name : undefined;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

function where(problem: ManifestProblem, rule: string | undefined): string {
  const field = problem.field || '(object)';
  return rule ? `rule "${rule}" ${field}` : field;
}

/** One sentence naming the first problem (its rule and field) and how many more there are. */
function describe(problems: readonly ManifestProblem[], ruleOf: (field: string) => string | undefined, seeMore: string): string {
  const [first] = problems;
  if (!first) return '';
  const head = `${where(first, ruleOf(first.field))}: ${first.message}`;
  return problems.length > 1 ? `${head}; and ${plural(problems.length - 1, 'more problem', 'more problems')}${seeMore}` : head;
}

function generationOf(obj: ManagedObject): number {
  return obj.metadata.generation ?? 0;
}

/** Which version of the object the snapshot serves: this one, an older one (its last good), or none. */
function servedVersion(obj: ManagedObject, published: ReadonlyMap<string, ManagedObject>): { state: 'current' | 'older' | 'none'; generation?: number } {
  const inSnapshot = published.get(objectKey(obj.metadata));
  if (!inSnapshot || inSnapshot.metadata.uid !== obj.metadata.uid) return { state: 'none' };
  const generation = generationOf(inSnapshot);
  return generation === generationOf(obj) ? { state: 'current', generation } : { state: 'older', generation };
}

const served = (obj: ManagedObject, published: ReadonlyMap<string, ManagedObject>): boolean => servedVersion(obj, published).state === 'current';

const pendingMessage = (obj: ManagedObject): string =>
  `generation ${generationOf(obj)} is not in effect yet: the rules being served were built before it (see the controller log for problems in other objects)`;

export function identityStatus(identity: AgentIdentity, ctx: StatusContext): DesiredStatus {
  const namespace = identity.metadata.namespace ?? 'default';
  const name = identity.metadata.name;
  const key = `${namespace}/${name}`;
  const generation = generationOf(identity);
  const previous = identity.status?.conditions;
  const problems = ctx.problems.get(objectLabel('AgentIdentity', namespace, name)) ?? [];
  const bound = [...(ctx.policiesByIdentity.get(key) ?? [])];
  const spec = identity.spec;
  const expiresAtMs = spec.expiresAt !== undefined ? Date.parse(spec.expiresAt) : undefined;
  const nowMs = ctx.now.getTime();
  let requeueAfterMs: number | undefined;

  let ready: [Condition['status'], string, string];
  if (problems.length > 0) {
    const version = servedVersion(identity, ctx.snapshot.identities);
    const fallback =
      version.state === 'older'
        ? `; generation ${version.generation}, the last good one, is still in effect`
        : version.state === 'none'
          ? '; this identity is not served: its agents are denied and get no credentials'
          : '';
    ready = ['False', 'Invalid', `${describe(problems, () => undefined, '')}${fallback}`];
  } else if (!served(identity, ctx.snapshot.identities)) {
    ready = ['False', 'Pending', pendingMessage(identity)];
  } else if (spec.suspended === true) {
    ready = ['False', 'Suspended', 'spec.suspended is true: every call of this agent is denied and no credentials are issued'];
  } else if (expiresAtMs !== undefined && expiresAtMs <= nowMs) {
    ready = ['False', 'Expired', `expired at ${spec.expiresAt}: treated as suspended`];
  } else if (spec.parent !== undefined && spec.parent !== '' && !ctx.snapshot.identities.has(`${namespace}/${spec.parent}`)) {
    ready = ['False', 'ParentMissing', `spec.parent names AgentIdentity "${spec.parent}", which does not exist in namespace ${namespace}`];
  } else if (bound.length === 0) {
    ready = ['False', 'NoPolicies', `no AgentPolicy in namespace ${namespace} targets this identity: every call is denied`];
  } else {
    ready = ['True', 'Bound', `bound by ${plural(bound.length, 'policy', 'policies')}: ${listNames(bound)}`];
  }
  if (expiresAtMs !== undefined && Number.isFinite(expiresAtMs) && expiresAtMs > nowMs) requeueAfterMs = expiresAtMs - nowMs + 1000;

  const status: OwnedStatus = {
    observedGeneration: generation,
    spiffeID: spiffeIdFor(ctx.compiled.policies.trustDomain, namespace, name),
    boundPolicies: bound,
    conditions: [condition('Ready', ...ready, generation, previous, ctx.now)],
  };
  return requeueAfterMs !== undefined ? { status, requeueAfterMs } : { status };
}

export function policyStatus(policy: AgentPolicy, ctx: StatusContext): DesiredStatus {
  const namespace = policy.metadata.namespace ?? 'default';
  const name = policy.metadata.name;
  const label = objectLabel('AgentPolicy', namespace, name);
  const generation = generationOf(policy);
  const previous = policy.status?.conditions;
  const problems = ctx.problems.get(label) ?? [];
  const warnings = ctx.warnings.get(label) ?? [];
  const rules: unknown = policy.spec?.rules;
  const ruleCount = Array.isArray(rules) ? rules.length : 0;
  const bound = [...(ctx.compiled.policies.bindings.get(`${namespace}/${name}`) ?? [])];
  const ruleOf = (field: string): string | undefined => ruleNameOf(policy, field);

  const errors: PolicyError[] = problems.slice(0, MAX_ERRORS).map((p) => {
    const rule = ruleOf(p.field);
    return { ...(rule ? { rule } : {}), field: p.field, message: clip(p.message, 512) };
  });
  if (problems.length > MAX_ERRORS) errors.push({ field: '', message: `and ${problems.length - MAX_ERRORS} more problems` });

  let compiled: [Condition['status'], string, string];
  let ready: [Condition['status'], string, string];
  if (problems.length > 0) {
    compiled = ['False', 'CompileFailed', describe(problems, ruleOf, ' (see status.errors)')];
    const version = servedVersion(policy, ctx.snapshot.policies);
    const inEffect = version.state === 'older' ? `generation ${version.generation}, the last that compiled, is enforced instead` : 'no version of this policy is enforced';
    ready = ['False', 'CompileFailed', `generation ${generation} does not compile, so its rules are not in effect (${inEffect}); fix the errors in status.errors`];
  } else {
    const warning = warnings.length > 0 ? `; warning: ${describe(warnings, ruleOf, '')}` : '';
    compiled = ['True', 'Compiled', `${plural(ruleCount, 'rule', 'rules')} compiled${warning}`];
    if (!served(policy, ctx.snapshot.policies)) ready = ['False', 'Pending', pendingMessage(policy)];
    else if (bound.length === 0) ready = ['False', 'NoTargets', `targets match no AgentIdentity in namespace ${namespace}`];
    else if (policy.spec.mode === 'DryRun') ready = ['True', 'DryRun', `evaluated for ${plural(bound.length, 'identity', 'identities')} (${listNames(bound)}); decisions are recorded, not enforced`];
    else ready = ['True', 'Enforced', `enforced for ${plural(bound.length, 'identity', 'identities')}: ${listNames(bound)}`];
  }

  const status: OwnedStatus = {
    observedGeneration: generation,
    ruleCount,
    boundIdentities: bound,
    ...(errors.length > 0 ? { errors } : {}),
    conditions: [condition('Compiled', ...compiled, generation, previous, ctx.now), condition('Ready', ...ready, generation, previous, ctx.now)],
  };
  return { status };
}

function hostConflict(ctx: StatusContext, namespace: string, key: string): boolean {
  const hosts = ctx.compiled.tools.namespaces.get(namespace);
  if (!hosts) return false;
  for (const entry of [...hosts.exact.values(), ...hosts.wildcard.values()]) {
    if (entry.kind === 'conflict' && entry.tools.includes(key)) return true;
  }
  return false;
}

function secretMissing(tool: AgentTool, ctx: StatusContext, namespace: string): boolean {
  const ref = tool.spec.credential?.secretRef;
  if (!ref) return false;
  const value = ctx.snapshot.secrets.get(`${namespace}/${ref.name}`)?.values.get(ref.key);
  return value === undefined || value.trim() === '';
}

export function toolStatus(tool: AgentTool, ctx: StatusContext): DesiredStatus {
  const namespace = tool.metadata.namespace ?? 'default';
  const name = tool.metadata.name;
  const key = `${namespace}/${name}`;
  const generation = generationOf(tool);
  const previous = tool.status?.conditions;
  const problems = ctx.problems.get(objectLabel('AgentTool', namespace, name)) ?? [];
  const version = servedVersion(tool, ctx.snapshot.tools);
  // The actions in effect: of this generation, or of the last good one the store still serves.
  const compiledTool = version.state === 'none' ? undefined : ctx.compiled.tools.tools.get(key);
  const actionCount = compiledTool?.actions.size ?? 0;
  const declared = Array.isArray(tool.spec.actions) ? tool.spec.actions.length : 0;

  let ready: [Condition['status'], string, string];
  if (problems.length > 0) {
    const reason = hostConflict(ctx, namespace, key) ? 'HostConflict' : secretMissing(tool, ctx, namespace) ? 'SecretMissing' : 'Invalid';
    const scope = !compiledTool
      ? 'serves no request until fixed'
      : version.state === 'older'
        ? `generation ${version.generation}, the last good one, still serves ${plural(actionCount, 'action', 'actions')}`
        : `serving ${actionCount} of ${plural(declared, 'action', 'actions')}`;
    ready = ['False', reason, `${scope}: ${describe(problems, () => undefined, '')}`];
  } else if (!compiledTool || version.state !== 'current') {
    ready = ['False', 'Pending', pendingMessage(tool)];
  } else {
    ready = ['True', 'Serving', `serves ${plural(actionCount, 'action', 'actions')} on ${listNames(compiledTool.hosts)}`];
  }
  return {
    status: {
      observedGeneration: generation,
      actionCount,
      conditions: [condition('Ready', ...ready, generation, previous, ctx.now)],
    },
  };
}

export function desiredStatus(kind: ManagedKind, obj: ManagedObject, ctx: StatusContext): DesiredStatus {
  switch (kind) {
    case 'AgentIdentity':
      return identityStatus(obj as AgentIdentity, ctx);
    case 'AgentPolicy':
      return policyStatus(obj as AgentPolicy, ctx);
    case 'AgentTool':
      return toolStatus(obj as AgentTool, ctx);
  }
}

/** The part of a current .status that the reconciler owns, in the same shape as a desired one. */
export function ownedStatusOf(kind: ManagedKind, status: unknown): OwnedStatus {
  if (!status || typeof status !== 'object') return {};
  const source = status as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of OWNED_FIELDS[kind]) {
    if (source[field] === undefined) continue;
    if (field === 'conditions') {
      const owned = OWNED_CONDITIONS[kind];
      const list = Array.isArray(source.conditions) ? (source.conditions as Condition[]) : [];
      const mine = list.filter((c) => c && typeof c === 'object' && owned.includes(c.type));
      if (mine.length > 0) out.conditions = mine;
    } else {
      out[field] = source[field];
    }
  }
  return out;
}

// Stable JSON: keys sorted, conditions sorted by type, empty errors dropped, optionally without
// lastTransitionTime (which a lagging cache cannot know).
function canonical(status: OwnedStatus, withTransitionTimes: boolean): string {
  const norm = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(norm);
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(value).sort()) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined || (!withTransitionTimes && k === 'lastTransitionTime')) continue;
        out[k] = norm(v);
      }
      return out;
    }
    return value;
  };
  const copy: OwnedStatus = { ...status };
  if (copy.errors && copy.errors.length === 0) delete copy.errors;
  if (copy.conditions) copy.conditions = [...copy.conditions].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
  return JSON.stringify(norm(copy));
}

/** True when writing `desired` would change nothing the reconciler owns in `current`. */
export function statusEqual(desired: OwnedStatus, current: OwnedStatus): boolean {
  return canonical(desired, true) === canonical(current, true);
}

/** Identifies a desired status up to transition times, for "already written" memos. */
export function statusFingerprint(status: OwnedStatus): string {
  return canonical(status, false);
}

export interface StatusEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly note: string;
}

/**
 * The Events a status change deserves: a Warning when an object enters a problem state or its
 * problem changes, a Normal when it leaves one. A status that stays the same yields nothing,
 * which is the first line of defence against a stuck error repeating itself.
 */
export function statusEvents(kind: ManagedKind, before: OwnedStatus, after: OwnedStatus): StatusEvent[] {
  const type = EVENT_CONDITION[kind];
  const b = before.conditions?.find((c) => c.type === type);
  const a = after.conditions?.find((c) => c.type === type);
  if (!a) return [];
  const wasProblem = b?.status === 'False' && PROBLEM_REASONS.has(b.reason ?? '');
  const isProblem = a.status === 'False' && PROBLEM_REASONS.has(a.reason ?? '');
  if (isProblem) {
    if (wasProblem && b?.reason === a.reason && b.message === a.message) return [];
    return [{ type: 'Warning', reason: a.reason ?? 'Invalid', note: a.message ?? '' }];
  }
  if (wasProblem) {
    const note = kind === 'AgentPolicy' ? `compiles again: ${a.message ?? ''}` : `problem resolved: ${a.message ?? ''}`;
    return [{ type: 'Normal', reason: a.reason ?? 'Resolved', note }];
  }
  return [];
}
