// Rule conditions (`when`) in CEL, on @marcbachmann/cel-js. Each condition is parsed and
// type-checked once when policies compile; a type-checked AST also evaluates faster, because the
// library then skips its evaluation-time checks. Variables are declared with concrete types, so a
// typo in a top-level name or in a field of identity/request/action is a compile problem, not a
// silent runtime false. `params` stays a dynamic map: its keys depend on the tool.
//
// Numbers in params are JSON numbers and stay CEL doubles (CEL's JSON mapping). CEL compares
// int and double across types, so `params.amount > 1000` works for 1500 and 1000.5 alike;
// arithmetic needs double literals (`params.amount * 1.5`, `params.n + 1.0`).
import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import type { AgentIdentity } from '../../../crds/generated/types.ts';
import type { Classified, HttpRequestAttributes } from '../authz/types.ts';
import { MandateError } from '../errors.ts';
import { unsafeRegexReason } from './regex.ts';

/** The CRD caps `when` at 4096 characters; the same bound holds for manifests read from files. */
export const MAX_CONDITION_LENGTH = 4096;
/** A comprehension inside a comprehension costs n²; one more level would cost n³ on agent input. */
export const MAX_COMPREHENSION_NESTING = 2;

const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

export interface CelIdentityFields {
  readonly name: string;
  readonly namespace: string;
  readonly spiffeId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly owner?: string;
  readonly trustLevel?: string;
  readonly version?: string;
}

// Classes, not plain objects: the CEL library binds a declared message type to its constructor,
// so values of these classes are used without per-evaluation conversion. Optional fields are left
// off when absent, so `has(identity.version)` says whether the identity declares a version.
export class CelIdentity {
  declare readonly name: string;
  declare readonly namespace: string;
  declare readonly spiffeId: string;
  declare readonly labels: Readonly<Record<string, string>>;
  declare readonly owner?: string;
  declare readonly trustLevel?: string;
  declare readonly version?: string;
  constructor(fields: CelIdentityFields) {
    assignDefined(this, fields);
    Object.freeze(this);
  }
}

export class CelRequest {
  declare readonly method: string;
  declare readonly host: string;
  declare readonly path: string;
  declare readonly query: Readonly<Record<string, string>>;
  declare readonly headers: Readonly<Record<string, string>>;
  constructor(request: HttpRequestAttributes) {
    // Plain assignments: this object is built on every call that evaluates a condition.
    const self = this as { -readonly [K in keyof CelRequest]: CelRequest[K] };
    self.method = request.method;
    self.host = request.host;
    self.path = request.path;
    self.query = request.query;
    self.headers = request.headers;
    Object.freeze(this);
  }
}

export class CelAction {
  declare readonly name: string;
  declare readonly tool: string;
  declare readonly classification: string;
  declare readonly reversible: boolean;
  constructor(classified: Classified) {
    const self = this as { -readonly [K in keyof CelAction]: CelAction[K] };
    self.name = classified.action;
    self.tool = classified.tool;
    self.classification = classified.classification;
    self.reversible = classified.reversible;
    Object.freeze(this);
  }
}

function assignDefined(target: object, fields: object): void {
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) Object.defineProperty(target, key, { value, enumerable: true });
  }
}

export interface CelContext {
  readonly identity: CelIdentity;
  readonly request: CelRequest;
  readonly action: CelAction;
  readonly params: Readonly<Record<string, unknown>>;
  readonly now: Date;
}

export function celIdentity(identity: AgentIdentity, spiffeId: string): CelIdentity {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(identity.metadata.labels ?? {})) {
    if (typeof value === 'string') labels[key] = value;
  }
  return new CelIdentity({
    name: identity.metadata.name,
    namespace: identity.metadata.namespace ?? 'default',
    spiffeId,
    labels: Object.freeze(labels),
    owner: identity.spec.owner,
    trustLevel: identity.spec.trustLevel,
    version: identity.spec.version,
  });
}

const env = new Environment({
  limits: { maxAstNodes: 2048, maxDepth: 64, maxListElements: 256, maxMapEntries: 256, maxCallArguments: 16 },
})
  .registerType('mandate.Identity', {
    ctor: CelIdentity,
    fields: {
      name: 'string',
      namespace: 'string',
      spiffeId: 'string',
      labels: 'map<string, string>',
      owner: 'string',
      trustLevel: 'string',
      version: 'string',
    },
  })
  .registerType('mandate.Request', {
    ctor: CelRequest,
    fields: { method: 'string', host: 'string', path: 'string', query: 'map<string, string>', headers: 'map<string, string>' },
  })
  .registerType('mandate.Action', {
    ctor: CelAction,
    fields: { name: 'string', tool: 'string', classification: 'string', reversible: 'bool' },
  })
  .registerVariable('identity', 'mandate.Identity')
  .registerVariable('request', 'mandate.Request')
  .registerVariable('action', 'mandate.Action')
  .registerVariable('params', 'map<string, dyn>')
  .registerVariable('now', 'google.protobuf.Timestamp');

/** A `when` that could not be evaluated; the caller decides what that means (fail closed). */
export class ConditionError {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

export interface CelCondition {
  readonly source: string;
  /** true/false, or a ConditionError when evaluation failed or did not produce a bool. */
  evaluate(ctx: CelContext): boolean | ConditionError;
}

/** Parses and type-checks a condition; throws MandateError POLICY_COMPILE with CEL's message. */
export function compileCondition(source: string): CelCondition {
  if (source.length > MAX_CONDITION_LENGTH) {
    throw new MandateError('POLICY_COMPILE', `condition is longer than ${MAX_CONDITION_LENGTH} characters`);
  }
  if (source.trim() === '') throw new MandateError('POLICY_COMPILE', 'condition is empty');
  let parsed: ReturnType<typeof env.parse>;
  try {
    parsed = env.parse(source);
  } catch (err) {
    throw new MandateError('POLICY_COMPILE', celMessage(err), {}, { cause: err });
  }
  const checked = parsed.check();
  if (!checked.valid) {
    throw new MandateError('POLICY_COMPILE', celMessage(checked.error), {}, { cause: checked.error });
  }
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    throw new MandateError('POLICY_COMPILE', `condition must evaluate to bool, not ${checked.type}`);
  }
  const refused = refuseCostly(parsed.ast, 0);
  if (refused) throw new MandateError('POLICY_COMPILE', refused);
  const run = parsed as (ctx: CelContext) => unknown;
  return Object.freeze({
    source,
    evaluate(ctx: CelContext): boolean | ConditionError {
      let value: unknown;
      try {
        value = run(ctx);
      } catch (err) {
        return new ConditionError(celMessage(err));
      }
      if (typeof value === 'boolean') return value;
      return new ConditionError(`condition produced ${describe(value)}, not a bool`);
    },
  });
}

/** Walks the AST for the two things that make evaluation cost depend badly on agent input. */
function refuseCostly(node: ASTNode, nesting: number): string | undefined {
  if (node.op === 'rcall' || node.op === 'call') {
    const [name, ...rest] = node.args as [string, ...unknown[]];
    const argList = (node.op === 'rcall' ? rest[1] : rest[0]) as ASTNode[];
    if (name === 'matches') {
      const pattern = argList[argList.length - 1];
      if (pattern?.op !== 'value' || typeof pattern.args !== 'string') {
        return 'matches() needs a string literal pattern, so it can be checked when the policy compiles';
      }
      const reason = unsafeRegexReason(pattern.args);
      if (reason) return reason;
    }
    const inner = node.op === 'rcall' && COMPREHENSIONS.has(name) ? nesting + 1 : nesting;
    if (inner > MAX_COMPREHENSION_NESTING) {
      return `comprehensions (all, exists, exists_one, map, filter) may nest at most ${MAX_COMPREHENSION_NESTING} deep`;
    }
    if (node.op === 'rcall') {
      const found = refuseCostly(rest[0] as ASTNode, nesting);
      if (found) return found;
    }
    for (const arg of argList) {
      const found = refuseCostly(arg, inner);
      if (found) return found;
    }
    return undefined;
  }
  if (node.op === 'value' || node.op === 'id') return undefined;
  return walkArgs(node.args, nesting);
}

function walkArgs(args: unknown, nesting: number): string | undefined {
  if (Array.isArray(args)) {
    for (const item of args) {
      const found = walkArgs(item, nesting);
      if (found) return found;
    }
    return undefined;
  }
  if (args !== null && typeof args === 'object' && 'op' in args) return refuseCostly(args as ASTNode, nesting);
  return undefined;
}

/** CEL's message without the multi-line source excerpt, plus the column it points at. */
function celMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const first = err.message.split('\n', 1)[0]?.trim() || err.name;
  const range = (err as { range?: { start: number } }).range;
  return range && typeof range.start === 'number' ? `${first} (at column ${range.start + 1})` : first;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'bigint') return 'an int';
  if (typeof value === 'number') return 'a double';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Date) return 'a timestamp';
  return `a ${typeof value === 'object' ? 'map' : typeof value}`;
}
