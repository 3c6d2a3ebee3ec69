// CEL evaluation cost of realistic AgentPolicy `when` conditions: @marcbachmann/cel-js (the
// library Mandate uses) against @bufbuild/cel, in the same process on the same inputs, plus
// Mandate's own compiled condition (cel-js with the typed environment of controller/src/policy/
// cel.ts), which is what a check actually runs. Each expression is compiled once and evaluated
// in a bounded loop (time and count); the libraries must agree on every result, or the run fails.
//
//   node test/bench/cel.bench.ts            markdown table on stdout
//   node test/bench/cel.bench.ts --json     the same numbers as JSON
import { celEnv, isCelError, parse as bufParse, plan as bufPlan } from '@bufbuild/cel';
import { parse as celJsParse } from '@marcbachmann/cel-js';
import { CelAction, CelRequest, celIdentity, compileCondition, type CelContext } from '../../controller/src/policy/cel.ts';
import type { AgentIdentity } from '../../crds/generated/types.ts';
import type { Classified, HttpRequestAttributes } from '../../controller/src/authz/types.ts';

export const expressions: readonly { readonly name: string; readonly source: string }[] = [
  { name: 'amount threshold', source: 'params.amount > 1000' },
  { name: 'currency and amount', source: "params.currency in ['EUR', 'USD'] && params.amount <= 5000" },
  { name: 'param prefix and method', source: "'repo' in params && params.repo.startsWith('bench-') && request.method == 'POST'" },
  { name: 'identity label or classification', source: "identity.labels['tier'] == 'gold' || action.classification != 'restricted'" },
  { name: 'list size and exists', source: "size(params.recipients) <= 10 && !params.recipients.exists(r, r.endsWith('.gov'))" },
  { name: 'header matches namespace', source: "request.headers['x-tenant'] == identity.namespace && params.to.endsWith('@example.com')" },
];

const identity: AgentIdentity = {
  apiVersion: 'mandate.dev/v1alpha1',
  kind: 'AgentIdentity',
  metadata: { name: 'billing-agent', namespace: 'payments', labels: { tier: 'silver', team: 'billing' } },
  spec: { owner: 'billing@example.com', serviceAccount: 'billing-agent', version: '1.4.2', trustLevel: 'medium' },
};
const spiffeId = 'spiffe://cluster.local/ns/payments/agent/billing-agent';
const params = {
  amount: 1500,
  currency: 'EUR',
  repo: 'bench-service',
  to: 'ops@example.com',
  recipients: ['a@example.com', 'b@example.com', 'c@partner.org'],
};
const headers = { 'content-type': 'application/json', 'x-tenant': 'payments', 'user-agent': 'python-httpx/0.27.2' };
const request: HttpRequestAttributes = {
  id: 'bench-1',
  method: 'POST',
  host: 'payments.bench.internal',
  path: '/v1/charges',
  query: {},
  headers,
  scheme: 'https',
  bodyTruncated: false,
};
const classified: Classified = { tool: 'payments/payments', action: 'payments.charge.create', classification: 'confidential', reversible: true, params };

/** The context as plain data, for the two libraries used without Mandate's typed environment. */
const plainContext = {
  identity: { name: 'billing-agent', namespace: 'payments', spiffeId, labels: { tier: 'silver', team: 'billing' } },
  request: { method: 'POST', host: request.host, path: request.path, query: {}, headers },
  action: { name: classified.action, tool: classified.tool, classification: classified.classification, reversible: true },
  params,
};
const mandateContext: CelContext = {
  identity: celIdentity(identity, spiffeId),
  request: new CelRequest(request),
  action: new CelAction(classified),
  params,
  now: new Date(),
};

export interface CelRow {
  readonly name: string;
  readonly source: string;
  readonly result: boolean;
  readonly celJsNs: number;
  readonly mandateNs: number;
  readonly bufbuildNs: number;
}

export interface BenchBounds {
  readonly minMs: number;
  readonly maxIterations: number;
  readonly warmup: number;
}

/** ns per call of `fn`, over at least `minMs` or `maxIterations` calls, whichever comes first. */
export function measure(fn: () => unknown, bounds: BenchBounds): number {
  let sink = 0;
  for (let i = 0; i < bounds.warmup; i += 1) if (fn() === true) sink += 1;
  const batch = 1000;
  let iterations = 0;
  const start = process.hrtime.bigint();
  const minNs = BigInt(bounds.minMs) * 1_000_000n;
  let elapsed = 0n;
  while (iterations < bounds.maxIterations && elapsed < minNs) {
    for (let i = 0; i < batch; i += 1) if (fn() === true) sink += 1;
    iterations += batch;
    elapsed = process.hrtime.bigint() - start;
  }
  if (sink < 0) throw new Error('unreachable');
  return Number(elapsed) / iterations;
}

function asBool(value: unknown, lib: string, source: string): boolean {
  if (isCelError(value)) throw new Error(`${lib} failed on ${source}: ${value.message}`);
  if (typeof value !== 'boolean') throw new Error(`${lib} returned ${typeof value} for ${source}`);
  return value;
}

export function runCelBench(bounds: BenchBounds = { minMs: 300, maxIterations: 3_000_000, warmup: 20_000 }): CelRow[] {
  const env = celEnv();
  return expressions.map(({ name, source }) => {
    const celJs = celJsParse(source);
    const buf = bufPlan(env, bufParse(source));
    const mandate = compileCondition(source);
    const a = asBool(celJs(plainContext), '@marcbachmann/cel-js', source);
    const b = asBool(buf(plainContext), '@bufbuild/cel', source);
    const c = mandate.evaluate(mandateContext);
    if (typeof c !== 'boolean') throw new Error(`Mandate's condition failed on ${source}: ${c.message}`);
    if (a !== b || a !== c) throw new Error(`the evaluators disagree on ${source}: cel-js ${a}, bufbuild ${b}, Mandate ${c}`);
    return {
      name,
      source,
      result: a,
      celJsNs: measure(() => celJs(plainContext), bounds),
      mandateNs: measure(() => mandate.evaluate(mandateContext), bounds),
      bufbuildNs: measure(() => buf(plainContext), bounds),
    };
  });
}

export function celMarkdown(rows: readonly CelRow[]): string {
  const f = (n: number): string => Math.round(n).toLocaleString('en-US');
  const geo = (pick: (r: CelRow) => number): number => Math.exp(rows.reduce((s, r) => s + Math.log(pick(r)), 0) / rows.length);
  return [
    'Evaluation time per call (ns/op, lower is better), each expression compiled once, same process and inputs.',
    '',
    '| Expression | Result | cel-js | Mandate (cel-js, typed env) | @bufbuild/cel | bufbuild / cel-js |',
    '|---|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| \`${r.source.replace(/\|/g, '\\|')}\` | ${r.result} | ${f(r.celJsNs)} | ${f(r.mandateNs)} | ${f(r.bufbuildNs)} | ${(r.bufbuildNs / r.celJsNs).toFixed(1)}× |`),
    `| geometric mean | | ${f(geo((r) => r.celJsNs))} | ${f(geo((r) => r.mandateNs))} | ${f(geo((r) => r.bufbuildNs))} | ${(geo((r) => r.bufbuildNs) / geo((r) => r.celJsNs)).toFixed(1)}× |`,
  ].join('\n');
}

if (import.meta.main) {
  const rows = runCelBench();
  process.stdout.write(process.argv.includes('--json') ? `${JSON.stringify(rows)}\n` : `${celMarkdown(rows)}\n`);
}
