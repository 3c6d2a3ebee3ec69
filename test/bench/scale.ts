// The scaled policy set for the load benchmark: a fleet of AgentIdentities (100 by default) and
// AgentPolicies holding a fixed total of rules (1,000 by default), over the example tools from
// policies/ topped up with generated ones, plus the mix of requests one identity of that fleet
// sends under load: allowed reads and writes, MCP tool calls, and denials of every kind (fleet
// guardrail, failed condition, no rule, unknown destination).
//
// Shape of the policies (what a platform team would write):
//  - one policy per identity: a broad Allow over one tool, reads and conditioned writes on three
//    more, then rules that only gold-tier identities satisfy;
//  - one policy per team (label selector), with rate-limited reads and a conditioned write on
//    the team's shared tools;
//  - one fleet-wide guardrail policy: Deny irreversible actions, Deny a tainted parameter value,
//    RequireApproval above an amount, Deny for sandbox identities.
// Everything lives in one namespace because AgentTools serve callers of their own namespace.
// Pure: the caller reads examples and writes files (see scale-files.ts).
import type { AgentIdentity, AgentPolicy, AgentTool, ObjectMeta, PolicyRule } from '../../crds/generated/types.ts';
import { catalogTool, credentialSecretName, generatedToolCount, generatedTools, type CatalogAction, type CatalogTool, type ParamSpec } from './catalog.ts';
import { callFor, checkRequest, type ParamValues } from './requests.ts';

export interface SecretManifest {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: ObjectMeta;
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface ScaleOptions {
  readonly identities: number;
  readonly rules: number;
  readonly teams: number;
  readonly teamRules: number;
  readonly guardrailRules: number;
  readonly namespace: string;
  readonly trustDomain: string;
  /** Generated tools are added until there are at least this many. */
  readonly minTools: number;
  /** Messages in the load data file (ghz sends them round-robin). */
  readonly mixSize: number;
}

export const defaultScale: ScaleOptions = Object.freeze({
  identities: 100,
  rules: 1000,
  teams: 10,
  teamRules: 14,
  guardrailRules: 60,
  namespace: 'bench',
  trustDomain: 'cluster.local',
  minTools: 12,
  mixSize: 100,
});

export interface ExampleManifests {
  readonly tools: readonly AgentTool[];
  readonly secrets: readonly SecretManifest[];
}

export type MixCategory =
  | 'read'
  | 'write'
  | 'mcp'
  | 'guardrail-deny'
  | 'condition-deny'
  | 'default-deny'
  | 'mcp-deny'
  | 'unknown-host';

export interface MixEntry {
  readonly category: MixCategory;
  readonly expect: 'allow' | 'deny';
  readonly protocol: 'HTTP' | 'MCP';
  /** The action the request classifies to, if any. */
  readonly action?: string;
  readonly request: Record<string, unknown>;
}

/** Share of each category in the mix, in percent; an empty category's share goes to reads. */
export const mixWeights: Readonly<Record<MixCategory, number>> = Object.freeze({
  read: 40,
  write: 15,
  mcp: 15,
  'guardrail-deny': 8,
  'condition-deny': 5,
  'default-deny': 10,
  'mcp-deny': 5,
  'unknown-host': 2,
});

const expectOf: Readonly<Record<MixCategory, 'allow' | 'deny'>> = {
  read: 'allow',
  write: 'allow',
  mcp: 'allow',
  'guardrail-deny': 'deny',
  'condition-deny': 'deny',
  'default-deny': 'deny',
  'mcp-deny': 'deny',
  'unknown-host': 'deny',
};

export interface ScaleSummary {
  readonly identities: number;
  readonly policies: number;
  readonly rules: number;
  readonly rulesBoundToLoadIdentity: number;
  readonly tools: number;
  readonly exampleTools: number;
  readonly generatedTools: number;
  readonly actions: number;
  readonly mix: Readonly<Record<MixCategory, number>>;
  readonly expectAllow: number;
  readonly expectDeny: number;
  readonly mcpRequests: number;
}

export interface ScaledSet {
  readonly identities: AgentIdentity[];
  readonly policies: AgentPolicy[];
  readonly tools: AgentTool[];
  readonly secrets: SecretManifest[];
  /** The identity the load is sent as (its certificate is issued for the benchmark). */
  readonly loadIdentity: { readonly namespace: string; readonly name: string; readonly spiffeId: string };
  /** One entry per message of the load data file, interleaved by weight. */
  readonly mix: MixEntry[];
  readonly summary: ScaleSummary;
}

export const FLEET_LABEL = 'bench.mandate.dev/fleet';
export const TAINTED_VALUE = 'prod-secrets';
const CONDITION_MAX = 5000;
const APPROVAL_ABOVE = 10000;
const RULE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const pad = (n: number, width = 3): string => String(n).padStart(width, '0');
export const identityName = (i: number): string => `agent-${pad(i)}`;

function ruleName(base: string): string {
  const cleaned = base.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '');
  const cut = cleaned.slice(0, 63).replace(/-$/, '');
  if (!RULE_NAME.test(cut)) throw new Error(`cannot make a rule name from ${base}`);
  return cut;
}

/** Adds rules under unique names until `count` is reached; later candidates are dropped. */
class RuleList {
  readonly rules: PolicyRule[] = [];
  readonly #names = new Set<string>();
  readonly #count: number;

  constructor(count: number) {
    this.#count = count;
  }

  get full(): boolean {
    return this.rules.length >= this.#count;
  }

  add(rule: Omit<PolicyRule, 'name'> & { name: string }): void {
    if (this.full) return;
    let name = ruleName(rule.name);
    for (let n = 2; this.#names.has(name); n += 1) name = ruleName(`${rule.name.slice(0, 58)}-${n}`);
    this.#names.add(name);
    this.rules.push({ ...rule, name });
  }
}

const stringParam = (a: CatalogAction): ParamSpec | undefined => a.params.find((p) => !p.numeric && p.source !== 'rest' && !p.name.includes('.'));
const numericParam = (a: CatalogAction): ParamSpec | undefined => a.params.find((p) => p.numeric);
const writes = (t: CatalogTool): CatalogAction[] => t.actions.filter((a) => !a.read && !a.dangerous);
const reads = (t: CatalogTool): CatalogAction[] => t.actions.filter((a) => a.read && !a.dangerous);

/** The condition a conditioned write carries, and the param values that satisfy or fail it. */
function writeCondition(a: CatalogAction): { when?: string; pass: ParamValues; fail?: ParamValues } {
  const num = numericParam(a);
  if (num) return { when: `params['${num.name}'] <= ${CONDITION_MAX}`, pass: { [num.name]: 120 }, fail: { [num.name]: 7000 } };
  const str = stringParam(a);
  if (str) return { when: `params['${str.name}'].startsWith('bench-')`, pass: {}, fail: { [str.name]: 'external-7' } };
  return { pass: {} };
}

/** A glob covering every action of the tool, or the explicit list when the names share no prefix. */
function wholeTool(t: CatalogTool): [string, ...string[]] {
  const first = t.actions[0]!.name.split('.')[0]!;
  if (t.actions.every((a) => a.name.split('.')[0] === first && a.name.includes('.'))) return [`${first}.**`];
  return t.actions.slice(0, 64).map((a) => a.name) as [string, ...string[]];
}

function toolSet(examples: ExampleManifests, opts: ScaleOptions): { tools: AgentTool[]; secrets: SecretManifest[]; exampleCount: number } {
  const tools: AgentTool[] = [];
  const hostsTaken = new Set<string>();
  const names = new Set<string>();
  for (const example of examples.tools) {
    const name = example.metadata.name;
    if (names.has(name) || example.spec.hosts.some((h) => hostsTaken.has(h))) continue;
    names.add(name);
    for (const h of example.spec.hosts) hostsTaken.add(h);
    tools.push({ ...example, metadata: { name, namespace: opts.namespace, ...(example.metadata.labels ? { labels: example.metadata.labels } : {}) } });
  }
  const exampleCount = tools.length;
  const counts = (): { http: number; mcp: number } => ({
    http: tools.filter((t) => (t.spec.protocol ?? 'HTTP') === 'HTTP').length,
    mcp: tools.filter((t) => t.spec.protocol === 'MCP').length,
  });
  // The identity layout needs 6 HTTP and 3 MCP tools (own, team and no-rule tools of the load
  // identity must differ); the generated set has 9 and 3.
  for (const gen of generatedTools(opts.namespace, generatedToolCount)) {
    const c = counts();
    if (tools.length >= opts.minTools && c.http >= 6 && c.mcp >= 3) break;
    if (names.has(gen.metadata.name)) continue;
    names.add(gen.metadata.name);
    tools.push(gen);
  }

  const secrets = new Map<string, SecretManifest>();
  for (const s of examples.secrets) {
    secrets.set(s.metadata.name, { ...s, metadata: { name: s.metadata.name, namespace: opts.namespace } });
  }
  for (const t of tools) {
    const ref = t.spec.credential?.secretRef;
    if (!ref) continue;
    const existing = secrets.get(ref.name);
    const hasKey = existing && (existing.stringData?.[ref.key] !== undefined || existing.data?.[ref.key] !== undefined);
    if (existing && hasKey) continue;
    const stringData = { ...existing?.stringData, [ref.key]: `bench-placeholder-${credentialSecretName(t.metadata.name)}` };
    secrets.set(ref.name, { apiVersion: 'v1', kind: 'Secret', metadata: { name: ref.name, namespace: opts.namespace }, ...(existing?.data ? { data: existing.data } : {}), stringData });
  }
  // Only Secrets a tool refers to: a bench folder holds nothing it does not use.
  const used = new Set(tools.map((t) => t.spec.credential?.secretRef.name).filter((n): n is string => n !== undefined));
  return { tools, secrets: [...secrets.values()].filter((s) => used.has(s.metadata.name)), exampleCount };
}

interface Layout {
  readonly ownHttp: readonly CatalogTool[];
  readonly ownMcp: CatalogTool;
  readonly teamHttp: CatalogTool;
  readonly teamMcp: CatalogTool;
}

function layoutOf(i: number, team: number, http: readonly CatalogTool[], mcp: readonly CatalogTool[]): Layout {
  const H = http.length;
  const M = mcp.length;
  return {
    ownHttp: [http[i % H]!, http[(i + 1) % H]!, http[(i + 3) % H]!],
    ownMcp: mcp[i % M]!,
    teamHttp: http[(team + 5) % H]!,
    teamMcp: mcp[(team + 1) % M]!,
  };
}

function ownRules(count: number, layout: Layout, all: readonly CatalogAction[]): PolicyRule[] {
  const list = new RuleList(count);
  const [broad, ...narrow] = layout.ownHttp as [CatalogTool, ...CatalogTool[]];
  list.add({ name: `all-${broad.name}`, effect: 'Allow', actions: wholeTool(broad), description: `everything on ${broad.name}; guardrails still apply` });
  const conditioned = [...narrow, layout.ownMcp];
  conditioned.forEach((t, k) => {
    const r = reads(t);
    if (r.length === 0) return;
    list.add({
      name: `read-${t.name}`,
      effect: 'Allow',
      actions: r.slice(0, 64).map((a) => a.name) as [string, ...string[]],
      ...(k === 0 ? { rateLimit: { requests: 1_000_000, per: '1m' } } : {}),
    });
  });
  let budgeted = false;
  conditioned.forEach((t, k) => {
    const w = writes(t)[0];
    if (!w) return;
    const cond = writeCondition(w);
    const num = numericParam(w);
    const budget = num && !budgeted ? { budget: { param: num.name, max: 1_000_000_000, per: '1h' } } : {};
    if (num) budgeted = true;
    list.add({
      name: `write-${w.name.replace(/\./g, '-')}`,
      effect: 'Allow',
      actions: [w.name],
      ...(cond.when ? { when: cond.when } : {}),
      ...budget,
      ...(k === 1 ? { schedule: { timeZone: 'UTC', start: '00:00', end: '24:00' } } : {}),
    });
  });
  // Rules this identity only meets at gold tier: evaluated on every matching call, never decisive
  // for the load identity (silver).
  for (let k = 0; !list.full && k < all.length * 4; k += 1) {
    const a = all[k % all.length]!;
    list.add({ name: `gold-${a.name.replace(/\./g, '-')}`, effect: 'Allow', actions: [a.name], when: "identity.labels['tier'] == 'gold'" });
  }
  return list.rules;
}

function teamRules(count: number, layout: Layout, all: readonly CatalogAction[]): PolicyRule[] {
  const list = new RuleList(count);
  for (const t of [layout.teamHttp, layout.teamMcp]) {
    const r = reads(t);
    if (r.length > 0) {
      list.add({ name: `team-read-${t.name}`, effect: 'Allow', actions: r.slice(0, 64).map((a) => a.name) as [string, ...string[]], rateLimit: { requests: 1_000_000, per: '1m', key: 'instance' } });
    }
    const w = writes(t)[0];
    if (w) {
      const cond = writeCondition(w);
      list.add({ name: `team-write-${w.name.replace(/\./g, '-')}`, effect: 'Allow', actions: [w.name], ...(cond.when ? { when: cond.when } : {}) });
    }
  }
  for (const t of [layout.teamHttp, layout.teamMcp]) {
    for (const w of writes(t)) {
      const str = stringParam(w);
      if (!str) continue;
      list.add({ name: `team-deny-external-${w.name.replace(/\./g, '-')}`, effect: 'Deny', actions: [w.name], when: `'${str.name}' in params && params['${str.name}'].contains('external')` });
    }
  }
  for (let k = 0; !list.full && k < all.length * 4; k += 1) {
    const a = all[(k * 7) % all.length]!;
    list.add({ name: `team-gold-${a.name.replace(/\./g, '-')}`, effect: 'Allow', actions: [a.name], when: "identity.labels['tier'] == 'gold' && request.method != 'DELETE'" });
  }
  return list.rules;
}

/** The string param most actions of a tool share, and those actions. */
function taintable(t: CatalogTool): { param: string; actions: CatalogAction[] } | undefined {
  const byParam = new Map<string, CatalogAction[]>();
  for (const a of t.actions) {
    for (const p of a.params) {
      if (p.numeric || p.source === 'rest' || p.name.includes('.')) continue;
      byParam.set(p.name, [...(byParam.get(p.name) ?? []), a]);
    }
  }
  let best: { param: string; actions: CatalogAction[] } | undefined;
  for (const [param, actions] of byParam) if (!best || actions.length > best.actions.length) best = { param, actions };
  return best;
}

function guardrailRules(count: number, catalog: readonly CatalogTool[], all: readonly CatalogAction[]): PolicyRule[] {
  const list = new RuleList(count);
  for (const t of catalog) {
    const dangerous = t.actions.filter((a) => a.dangerous);
    if (dangerous.length > 0) {
      list.add({ name: `deny-irreversible-${t.name}`, effect: 'Deny', actions: dangerous.slice(0, 64).map((a) => a.name) as [string, ...string[]], description: 'irreversible or restricted: through an elevation only' });
    }
  }
  for (const t of catalog) {
    const taint = taintable(t);
    if (!taint) continue;
    list.add({
      name: `deny-${TAINTED_VALUE}-${t.name}`,
      effect: 'Deny',
      actions: taint.actions.slice(0, 64).map((a) => a.name) as [string, ...string[]],
      when: `'${taint.param}' in params && params['${taint.param}'] == '${TAINTED_VALUE}'`,
    });
  }
  list.add({ name: 'deny-restricted-low-trust', effect: 'Deny', actions: ['**'], when: "action.classification == 'restricted' && identity.labels['tier'] == 'bronze'" });
  for (const a of all) {
    const num = numericParam(a);
    if (num && !a.read) list.add({ name: `approve-large-${a.name.replace(/\./g, '-')}`, effect: 'RequireApproval', actions: [a.name], when: `params['${num.name}'] > ${APPROVAL_ABOVE}` });
  }
  for (let k = 0; !list.full && k < all.length * 4; k += 1) {
    const a = all[k % all.length]!;
    list.add({ name: `deny-sandbox-${a.name.replace(/\./g, '-')}`, effect: 'Deny', actions: [a.name], when: "identity.labels['env'] == 'sandbox'" });
  }
  for (let k = 0; !list.full; k += 1) list.add({ name: `deny-admin-${k}`, effect: 'Deny', actions: [`admin_${k}.**`] });
  return list.rules;
}

const meta = (name: string, namespace: string, labels?: Record<string, string>): ObjectMeta => ({ name, namespace, ...(labels ? { labels } : {}) });

/** Orders entries so each category is spread evenly over the sequence (smooth weighted round robin). */
function interleave<T>(groups: readonly { weight: number; items: readonly T[] }[]): T[] {
  const state = groups.map((g) => ({ ...g, current: 0, used: 0 }));
  const total = state.reduce((s, g) => s + g.items.length, 0);
  const out: T[] = [];
  while (out.length < total) {
    let pick: (typeof state)[number] | undefined;
    for (const g of state) {
      if (g.used >= g.items.length) continue;
      g.current += g.weight;
      if (!pick || g.current > pick.current) pick = g;
    }
    if (!pick) break;
    pick.current -= state.filter((g) => g.used < g.items.length).reduce((s, g) => s + g.weight, 0);
    out.push(pick.items[pick.used]!);
    pick.used += 1;
  }
  return out;
}

export function scale(examples: ExampleManifests, opts: ScaleOptions = defaultScale): ScaledSet {
  const ownTotal = opts.rules - opts.guardrailRules - opts.teams * opts.teamRules;
  if (opts.identities < 1 || opts.teams < 1 || ownTotal < opts.identities * 7) {
    throw new Error(`cannot spread ${opts.rules} rules over ${opts.identities} identities (${opts.teams} teams × ${opts.teamRules}, ${opts.guardrailRules} guardrails): each identity needs at least 7 own rules`);
  }
  const { tools, secrets, exampleCount } = toolSet(examples, opts);
  const catalog = tools.map((t) => catalogTool(t, tools.indexOf(t) < exampleCount ? 'example' : 'generated'));
  const http = catalog.filter((t) => t.protocol === 'HTTP' && t.actions.length > 0);
  const mcp = catalog.filter((t) => t.protocol === 'MCP' && t.actions.length > 0);
  const all = catalog.flatMap((t) => t.actions);

  const identities: AgentIdentity[] = [];
  const policies: AgentPolicy[] = [];
  const tiers = ['silver', 'gold', 'bronze'] as const;
  for (let i = 0; i < opts.identities; i += 1) {
    const team = i % opts.teams;
    const name = identityName(i);
    identities.push({
      apiVersion: 'mandate.dev/v1alpha1',
      kind: 'AgentIdentity',
      metadata: meta(name, opts.namespace, { team: `t${team}`, tier: tiers[i % 3]!, env: i % 10 === 9 ? 'sandbox' : 'prod', [FLEET_LABEL]: 'true' }),
      spec: {
        owner: `team-t${team}@example.com`,
        description: `bench agent ${i} of team t${team}`,
        purpose: 'load benchmark',
        version: `1.${i % 7}.0`,
        serviceAccount: name,
        trustLevel: i % 3 === 2 ? 'low' : 'medium',
        dataClassificationCeiling: 'confidential',
      },
    });
    const own = Math.floor(ownTotal / opts.identities) + (i < ownTotal % opts.identities ? 1 : 0);
    const layout = layoutOf(i, team, http, mcp);
    policies.push({
      apiVersion: 'mandate.dev/v1alpha1',
      kind: 'AgentPolicy',
      metadata: meta(name, opts.namespace),
      spec: { description: `what ${name} may do`, mode: 'Enforce', targets: { identities: [name] }, rules: ownRules(own, layout, all) as AgentPolicy['spec']['rules'] },
    });
  }
  for (let k = 0; k < opts.teams; k += 1) {
    const layout = layoutOf(k, k, http, mcp);
    policies.push({
      apiVersion: 'mandate.dev/v1alpha1',
      kind: 'AgentPolicy',
      metadata: meta(`team-t${k}`, opts.namespace),
      spec: { description: `shared tools of team t${k}`, mode: 'Enforce', targets: { selector: { matchLabels: { team: `t${k}` } } }, rules: teamRules(opts.teamRules, layout, all) as AgentPolicy['spec']['rules'] },
    });
  }
  policies.push({
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentPolicy',
    metadata: meta('fleet-guardrails', opts.namespace),
    spec: { description: 'fleet-wide guardrails', mode: 'Enforce', targets: { selector: { matchLabels: { [FLEET_LABEL]: 'true' } } }, rules: guardrailRules(opts.guardrailRules, catalog, all) as AgentPolicy['spec']['rules'] },
  });

  const load = identities[0]!;
  const mix = loadMix(layoutOf(0, 0, http, mcp), http, mcp, opts.mixSize);
  const ruleCount = policies.reduce((s, p) => s + p.spec.rules.length, 0);
  const counts = Object.fromEntries(Object.keys(mixWeights).map((c) => [c, mix.filter((e) => e.category === c).length])) as Record<MixCategory, number>;
  return {
    identities,
    policies,
    tools,
    secrets,
    loadIdentity: { namespace: opts.namespace, name: load.metadata.name, spiffeId: `spiffe://${opts.trustDomain}/ns/${opts.namespace}/agent/${load.metadata.name}` },
    mix,
    summary: {
      identities: identities.length,
      policies: policies.length,
      rules: ruleCount,
      rulesBoundToLoadIdentity: policies[0]!.spec.rules.length + policies[opts.identities]!.spec.rules.length + policies[policies.length - 1]!.spec.rules.length,
      tools: tools.length,
      exampleTools: exampleCount,
      generatedTools: tools.length - exampleCount,
      actions: all.length,
      mix: counts,
      expectAllow: mix.filter((e) => e.expect === 'allow').length,
      expectDeny: mix.filter((e) => e.expect === 'deny').length,
      mcpRequests: mix.filter((e) => e.protocol === 'MCP').length,
    },
  };
}

interface Candidate {
  readonly action?: CatalogAction;
  readonly values?: ParamValues;
  /** For requests that classify to nothing. */
  readonly raw?: { host: string; path: string; method: string; protocol: 'HTTP' | 'MCP'; body?: string };
}

function loadMix(layout: Layout, http: readonly CatalogTool[], mcp: readonly CatalogTool[], size: number): MixEntry[] {
  const [broad, ...narrow] = layout.ownHttp as [CatalogTool, ...CatalogTool[]];
  const plain = (actions: readonly CatalogAction[]): Candidate[] => actions.map((action) => ({ action }));
  // The write a conditioned Allow rule covers, with params that satisfy the condition.
  const passing = (t: CatalogTool): Candidate[] => {
    const w = writes(t)[0];
    return w ? [{ action: w, values: writeCondition(w).pass }] : [];
  };
  const candidates: Record<MixCategory, Candidate[]> = {
    read: [...[...narrow, layout.teamHttp].flatMap((t) => plain(reads(t))), ...plain(reads(broad))],
    write: [...[...narrow, layout.teamHttp].flatMap(passing), ...plain(writes(broad))],
    mcp: [layout.ownMcp, layout.teamMcp].flatMap((t) => [...plain(reads(t)), ...passing(t)]),
    'guardrail-deny': [
      ...broad.actions.filter((a) => a.dangerous).map((action) => ({ action })),
      ...(() => {
        const taint = taintable(broad);
        return taint ? taint.actions.filter((a) => !a.dangerous).map((action) => ({ action, values: { [taint.param]: TAINTED_VALUE } })) : [];
      })(),
    ],
    'condition-deny': [...narrow, layout.ownMcp].flatMap((t) => {
      const w = writes(t)[0];
      const fail = w ? writeCondition(w).fail : undefined;
      return w && fail ? [{ action: w, values: fail }] : [];
    }),
    // No rule allows these; non-dangerous ones, so the guardrails do not decide first.
    'default-deny': http.filter((t) => !layout.ownHttp.includes(t) && t !== layout.teamHttp).flatMap((t) => t.actions.filter((a) => !a.dangerous).slice(0, 2).map((action) => ({ action }))),
    'mcp-deny': (() => {
      const outside = mcp.filter((t) => t !== layout.ownMcp && t !== layout.teamMcp).flatMap((t) => t.actions.filter((a) => !a.dangerous).slice(0, 2).map((action) => ({ action })));
      if (outside.length > 0) return outside;
      // Every MCP server is allowed somewhere: call a tool the allowed server does not register.
      const host = layout.ownMcp.actions[0]!;
      const body = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'exfiltrate_everything', arguments: {} } });
      return [{ raw: { host: host.host, path: host.mcpPath ?? '/mcp', method: 'POST', protocol: 'MCP' as const, body } }];
    })(),
    'unknown-host': [{ raw: { host: 'unregistered.example.net', path: '/v1/upload?dest=anywhere', method: 'POST', protocol: 'HTTP', body: '{"data":"x"}' } }],
  };

  const categories = Object.keys(mixWeights) as MixCategory[];
  const share = new Map<MixCategory, number>();
  for (const c of categories) share.set(c, candidates[c].length > 0 ? mixWeights[c] : 0);
  const lost = categories.reduce((s, c) => s + (candidates[c].length === 0 ? mixWeights[c] : 0), 0);
  share.set('read', (share.get('read') ?? 0) + lost);
  const totalShare = [...share.values()].reduce((s, v) => s + v, 0);

  // Largest remainder, so the slots add up to `size` exactly.
  const exact = categories.map((c) => ({ c, v: ((share.get(c) ?? 0) * size) / totalShare }));
  const slots = new Map(exact.map(({ c, v }) => [c, Math.floor(v)]));
  let left = size - [...slots.values()].reduce((s, v) => s + v, 0);
  for (const { c } of [...exact].sort((a, b) => (b.v % 1) - (a.v % 1))) {
    if (left <= 0) break;
    if ((share.get(c) ?? 0) === 0) continue;
    slots.set(c, (slots.get(c) ?? 0) + 1);
    left -= 1;
  }

  let seq = 0;
  let mcpId = 0;
  const groups = categories.map((category) => {
    const pool = candidates[category];
    const n = slots.get(category) ?? 0;
    const items: MixEntry[] = [];
    for (let k = 0; k < n; k += 1) {
      const cand = pool[k % pool.length]!;
      seq += 1;
      mcpId += 1;
      const spoof: Record<string, string> = seq % 10 === 3 ? { 'x-mandate-identity': 'spiffe://cluster.local/ns/bench/agent/admin' } : {};
      if (cand.action) {
        const call = callFor(cand.action, cand.values ?? {}, mcpId);
        items.push({
          category,
          expect: expectOf[category],
          protocol: cand.action.protocol,
          action: cand.action.name,
          request: checkRequest({ ...call, headers: { ...call.headers, ...spoof } }, seq),
        });
      } else {
        const raw = cand.raw!;
        items.push({
          category,
          expect: expectOf[category],
          protocol: raw.protocol,
          request: checkRequest({ method: raw.method, host: raw.host, scheme: 'https', path: raw.path, headers: spoof, ...(raw.body !== undefined ? { body: raw.body } : {}) }, seq),
        });
      }
    }
    return { weight: share.get(category) ?? 0, items };
  });
  return interleave(groups);
}
