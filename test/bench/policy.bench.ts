// Microbenchmark of the policy engine: compilePolicies() and decide() at fleet scale, with no
// socket, no classification and no audit in the loop. Reports decisions per second for
//  - baseline: one identity, one Allow rule (measured in the same run; the others are ratios);
//  - fleet:    1,000 rules spread over 100 identities as a platform team would write them
//              (a fleet guardrail policy, team policies by label selector, one policy per identity);
//  - dense:    100 identities each bound by all 1,000 rules (the worst case for candidate lookup).
// Rules mix literal and wildcard globs, CEL conditions, schedules, rate limits and budgets.
// No timing is asserted. Run: node test/bench/policy.bench.ts [--seconds 1.5]
import type { AgentIdentity, AgentPolicy, AgentTool, PolicyRule } from '../../crds/generated/types.ts';
import type { Classified, Effect, HttpRequestAttributes, PeerIdentity } from '../../controller/src/authz/types.ts';
import { compilePolicies } from '../../controller/src/policy/compile.ts';
import { decide, type DecideInput } from '../../controller/src/policy/decide.ts';
import { createLimiterState } from '../../controller/src/policy/limits.ts';
import type { PolicyIndex } from '../../controller/src/policy/types.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';

const NS = 'bench';
const TRUST_DOMAIN = 'cluster.local';
const SERVICES = 20;
const RESOURCES = ['repo', 'issue', 'invoice', 'ticket', 'file'];
const VERBS = ['read', 'list', 'create', 'update', 'delete'];
const TEAMS = 10;

export interface PolicyBenchOptions {
  readonly identities: number;
  readonly rules: number;
  /** Measuring time per scenario. */
  readonly seconds: number;
}

export interface ScenarioResult {
  readonly name: string;
  readonly identities: number;
  readonly rulesPerIdentity: number;
  readonly compileMs: number;
  readonly decisionsPerSecond: number;
  readonly effects: Readonly<Record<Effect, number>>;
}

export interface PolicyBenchResult {
  readonly baseline: ScenarioResult;
  readonly fleet: ScenarioResult;
  readonly dense: ScenarioResult;
}

const actions: string[] = [];
for (let s = 0; s < SERVICES; s++) for (const r of RESOURCES) for (const v of VERBS) actions.push(`svc${s}.${r}.${v}`);

/** Deterministic pseudo-random numbers, so every run measures the same work. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function tools(): AgentTool[] {
  return Array.from({ length: SERVICES }, (_, s) => ({
    apiVersion: 'mandate.dev/v1alpha1' as const,
    kind: 'AgentTool' as const,
    metadata: { name: `svc${s}`, namespace: NS },
    spec: {
      hosts: [`svc${s}.example.com`] as [string],
      actions: actions
        .filter((a) => a.startsWith(`svc${s}.`))
        .map((name) => ({ name, http: { method: 'POST' as const, path: `/${name.replaceAll('.', '/')}` } })) as AgentTool['spec']['actions'],
    },
  }));
}

function identities(count: number): AgentIdentity[] {
  return Array.from({ length: count }, (_, i) => ({
    apiVersion: 'mandate.dev/v1alpha1' as const,
    kind: 'AgentIdentity' as const,
    metadata: { name: `agent-${i}`, namespace: NS, labels: { team: `t${i % TEAMS}`, tier: i % 3 === 0 ? 'gold' : 'silver' } },
    spec: { owner: `team-${i % TEAMS}@example.com`, serviceAccount: `agent-${i}`, trustLevel: i % 3 === 0 ? ('high' as const) : ('medium' as const) },
  }));
}

/** A plausible rule; `n` varies globs, conditions and extras so the set is not uniform. */
function makeRule(n: number, random: () => number): PolicyRule {
  const s = Math.floor(random() * SERVICES);
  const r = RESOURCES[Math.floor(random() * RESOURCES.length)] as string;
  const v = VERBS[Math.floor(random() * VERBS.length)] as string;
  const name = `r${n}`;
  switch (n % 10) {
    case 0:
      return { name, effect: 'Deny', actions: [`svc${s}.**.delete`], when: 'has(params.protected) && params.protected == true' };
    case 1:
      return { name, effect: 'RequireApproval', actions: [`svc${s}.invoice.*`], when: 'has(params.amount) && params.amount > 5000' };
    case 2:
      return { name, effect: 'Allow', actions: [`svc${s}.**`], when: 'identity.trustLevel == "high"' };
    case 3:
      return { name, effect: 'Allow', actions: [`svc${s}.*.read`, `svc${s}.*.list`], rateLimit: { requests: 1_000_000, per: '1m' } };
    case 4:
      return {
        name,
        effect: 'Allow',
        actions: [`svc${s}.${r}.${v}`],
        schedule: { timeZone: 'Europe/Berlin', days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri'], start: '07:00', end: '20:00' },
      };
    case 5:
      return { name, effect: 'Allow', actions: [`svc${s}.invoice.create`], budget: { param: 'amount', max: 1e12, per: '1h' } };
    case 6:
      return { name, effect: 'Deny', actions: [`svc${s}.${r}.*`], when: `identity.labels["tier"] == "bronze" || params.branch == "main"` };
    case 7:
      return { name, effect: 'Allow', actions: [`svc${s}.${r}.*`], when: 'request.method == "POST" && !has(params.tainted)' };
    case 8:
      return { name, effect: 'Allow', actions: [`svc${s}.${r}.create`, `svc${s}.${r}.update`], rateLimit: { requests: 50, per: '1s', key: 'instance' } };
    default:
      return { name, effect: 'Allow', actions: [`svc${s}.${r}.${v}`] };
  }
}

function policyOf(name: string, rules: PolicyRule[], targets: AgentPolicy['spec']['targets']): AgentPolicy {
  return {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentPolicy',
    metadata: { name, namespace: NS, generation: 1 },
    spec: { targets, rules: rules as AgentPolicy['spec']['rules'] },
  };
}

function snapshotOf(parts: { identities: AgentIdentity[]; policies: AgentPolicy[]; tools: AgentTool[] }): Snapshot {
  const key = (o: { metadata: { namespace?: string; name: string } }): string => `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
  return {
    revision: 1,
    loadedAt: new Date(0).toISOString(),
    source: 'bench',
    identities: new Map(parts.identities.map((i) => [key(i), i])),
    policies: new Map(parts.policies.map((p) => [key(p), p])),
    tools: new Map(parts.tools.map((t) => [key(t), t])),
    secrets: new Map(),
  };
}

/** 1,000 rules as a fleet: ~2 % guardrail (all), ~30 % team policies (selector), the rest per identity. */
function fleetPolicies(identityCount: number, totalRules: number): AgentPolicy[] {
  const random = rng(7);
  let n = 0;
  const rules = (count: number): PolicyRule[] => Array.from({ length: count }, () => makeRule(n++, random));
  const guardrail = Math.max(1, Math.round(totalRules * 0.02));
  const perTeam = Math.max(1, Math.round((totalRules * 0.3) / TEAMS));
  const perIdentity = Math.max(1, Math.floor((totalRules - guardrail - perTeam * TEAMS) / identityCount));
  const policies = [policyOf('fleet-guardrails', rules(guardrail), { selector: {} })];
  for (let t = 0; t < TEAMS; t++) policies.push(policyOf(`team-t${t}`, rules(perTeam), { selector: { matchLabels: { team: `t${t}` } } }));
  for (let i = 0; i < identityCount; i++) policies.push(policyOf(`agent-${i}`, rules(perIdentity), { identities: [`agent-${i}`] }));
  return policies;
}

/** The same number of rules, in ten policies that every identity is bound by. */
function densePolicies(totalRules: number): AgentPolicy[] {
  const random = rng(11);
  const perPolicy = Math.ceil(totalRules / 10);
  let n = 0;
  return Array.from({ length: 10 }, (_, p) =>
    policyOf(`shared-${p}`, Array.from({ length: Math.min(perPolicy, totalRules - p * perPolicy) }, () => makeRule(n++, random)), { selector: {} }),
  );
}

function callMix(index: PolicyIndex, count: number): DecideInput[] {
  const random = rng(3);
  const plans = [...index.plans.values()];
  const base = Date.parse('2025-01-06T09:00:00Z'); // a Monday, inside the scheduled hours
  return Array.from({ length: count }, (_, i) => {
    const plan = plans[i % plans.length];
    if (!plan) throw new Error('no plans');
    const action = actions[Math.floor(random() * actions.length)] as string;
    const params: Record<string, unknown> = { amount: Math.round(random() * 8000 * 100) / 100, branch: random() < 0.1 ? 'main' : 'dev' };
    if (random() < 0.05) params.protected = true;
    if (random() < 0.05) params.tainted = 'x';
    const peer: PeerIdentity = { spiffeId: plan.spiffeId, namespace: plan.namespace, name: plan.name, serial: 'aa01' };
    const request: HttpRequestAttributes = {
      id: `r${i}`,
      method: 'POST',
      host: `${action.split('.')[0] ?? ''}.example.com`,
      path: `/${action.replaceAll('.', '/')}`,
      query: {},
      headers: { 'content-type': 'application/json' },
      scheme: 'https',
      bodyTruncated: false,
      sourceInstance: `pod-${i % 7}`,
    };
    const classified: Classified = { tool: `${NS}/${action.split('.')[0] ?? ''}`, action, classification: 'internal', reversible: !action.endsWith('.delete'), params };
    return { peer, request, classified, now: new Date(base + i * 7), killSwitch: { global: false, namespaces: [] } };
  });
}

function measure(name: string, snap: Snapshot, seconds: number): ScenarioResult {
  const t0 = performance.now();
  const { index, problems } = compilePolicies(snap, { trustDomain: TRUST_DOMAIN });
  const compileMs = performance.now() - t0;
  if (problems.length > 0) throw new Error(`${name}: ${problems.length} compile problems, first: ${JSON.stringify(problems[0])}`);
  const calls = callMix(index, 4096);
  const limits = createLimiterState();
  const effects: Record<Effect, number> = { Allow: 0, Deny: 0, RequireApproval: 0 };
  const plans = calls.map((c) => index.plans.get(c.peer.spiffeId));
  // Warm up: fills the candidate memos and lets the JIT settle.
  for (let i = 0; i < calls.length * 2; i++) decide(plans[i % calls.length], calls[i % calls.length] as DecideInput, limits);
  let done = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let now = start;
  while (now < deadline) {
    for (let k = 0; k < 1000; k++, done++) {
      const j = done % calls.length;
      effects[decide(plans[j], calls[j] as DecideInput, limits).effect]++;
    }
    now = performance.now();
  }
  const first = index.plans.values().next().value;
  return {
    name,
    identities: index.plans.size,
    rulesPerIdentity: first ? first.enforce.allow.length + first.enforce.deny.length + first.enforce.requireApproval.length : 0,
    compileMs,
    decisionsPerSecond: done / ((now - start) / 1000),
    effects,
  };
}

export function runPolicyBench(options: PolicyBenchOptions): PolicyBenchResult {
  const toolList = tools();
  const baseline = measure(
    'baseline',
    snapshotOf({
      identities: identities(1),
      policies: [policyOf('one', [{ name: 'all', effect: 'Allow', actions: ['**'] }], { identities: ['agent-0'] })],
      tools: toolList,
    }),
    options.seconds,
  );
  const fleet = measure(
    'fleet',
    snapshotOf({ identities: identities(options.identities), policies: fleetPolicies(options.identities, options.rules), tools: toolList }),
    options.seconds,
  );
  const dense = measure(
    'dense',
    snapshotOf({ identities: identities(options.identities), policies: densePolicies(options.rules), tools: toolList }),
    options.seconds,
  );
  return { baseline, fleet, dense };
}

function report(result: PolicyBenchResult): void {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  for (const s of [result.baseline, result.fleet, result.dense]) {
    const total = s.effects.Allow + s.effects.Deny + s.effects.RequireApproval;
    const pct = (n: number): string => `${((100 * n) / Math.max(1, total)).toFixed(0)}%`;
    const ratio = s === result.baseline ? '' : ` (${(s.decisionsPerSecond / result.baseline.decisionsPerSecond).toFixed(2)}x baseline)`;
    console.log(
      `${s.name.padEnd(8)} ${String(s.identities).padStart(3)} identities x ${String(s.rulesPerIdentity).padStart(4)} rules each, ` +
        `compile ${s.compileMs.toFixed(0)} ms: ${fmt(s.decisionsPerSecond)} decisions/s${ratio}; ` +
        `Allow ${pct(s.effects.Allow)}, Deny ${pct(s.effects.Deny)}, RequireApproval ${pct(s.effects.RequireApproval)}`,
    );
  }
}

if (import.meta.main) {
  const i = process.argv.indexOf('--seconds');
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 1.5;
  report(runPolicyBench({ identities: 100, rules: 1000, seconds: Number.isFinite(seconds) && seconds > 0 ? seconds : 1.5 }));
}
