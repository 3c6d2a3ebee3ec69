// Request → action. Host to tool (the caller's namespace only), then method + path template for
// HTTP tools, or the JSON-RPC message for MCP tools, then parameters. Whatever is ambiguous is
// refused rather than guessed, because the upstream server may guess differently than we do:
// dot segments, encoded slashes, repeated query keys used as parameters, duplicate JSON keys,
// and bodies Mandate did not see in full. Work is bounded (path segments, JSON depth, params).
import type { Classified, HttpRequestAttributes } from './types.ts';
import { findTool, type CompiledAction, type CompiledTool, type FieldPath, type PathTemplate, type ToolIndex } from './tools.ts';

export interface ClassifyLimits {
  readonly maxBodyBytes: number;
}

export type ClassifyFailureReason = 'unknown-destination' | 'unknown-action' | 'malformed' | 'too-large';

export type ClassifyResult =
  | { readonly ok: true; readonly tool: CompiledTool; readonly classified: Classified }
  | {
      readonly ok: false;
      readonly reason: ClassifyFailureReason;
      readonly httpStatus: number;
      /** Safe to show the agent: no header values, no secrets. */
      readonly message: string;
      /** The tool, when the host resolved to one (for the audit record). */
      readonly tool?: CompiledTool;
    };

export const MAX_PATH_SEGMENTS = 256;
export const MAX_JSON_DEPTH = 64;
/** Most parameters one request yields (MCP "all top-level arguments" is the unbounded case). */
export const MAX_PARAMS = 64;

const statusOf: Record<ClassifyFailureReason, number> = {
  'unknown-destination': 403,
  'unknown-action': 403,
  malformed: 400,
  'too-large': 413,
};

type Failure = Extract<ClassifyResult, { ok: false }>;
const fail = (reason: ClassifyFailureReason, message: string, tool?: CompiledTool): Failure => ({
  ok: false,
  reason,
  httpStatus: statusOf[reason],
  message,
  ...(tool ? { tool } : {}),
});

export function classify(index: ToolIndex, callerNamespace: string, req: HttpRequestAttributes, limits: ClassifyLimits): ClassifyResult {
  const found = findTool(index, callerNamespace, req.host);
  if (!found.found) return fail('unknown-destination', found.message);
  const tool = found.tool;
  if (tool.port !== undefined) {
    const port = req.port ?? (req.scheme === 'http' ? 80 : 443);
    if (port !== tool.port) return fail('unknown-destination', `AgentTool ${tool.key} serves ${req.host} on port ${tool.port} only`, tool);
  }
  const segments = splitPath(req.path);
  if (typeof segments === 'string') return fail('malformed', segments, tool);
  if (req.body && req.body.length > limits.maxBodyBytes) {
    return fail('too-large', `the request body is larger than the ${limits.maxBodyBytes} bytes Mandate evaluates`, tool);
  }
  return tool.protocol === 'MCP' ? classifyMcp(tool, req, segments) : classifyHttp(tool, req, segments);
}

/** Decoded path segments, or why the path is refused. `/a/b` → ['a', 'b']; `/` → ['']. */
export function splitPath(path: string): string[] | string {
  if (!path.startsWith('/')) return 'the request path must start with "/"';
  const raw = path.slice(1).split('/');
  if (raw.length > MAX_PATH_SEGMENTS) return `the request path has more than ${MAX_PATH_SEGMENTS} segments`;
  const out: string[] = [];
  for (const seg of raw) {
    // An encoded or back slash splits the path for some servers and not for others.
    if (seg.includes('\\') || /%(2f|5c)/i.test(seg)) return 'the request path contains an encoded "/" or a "\\", which servers interpret differently';
    let decoded: string;
    try {
      decoded = decodeURIComponent(seg);
    } catch {
      return 'the request path has an invalid percent-encoding';
    }
    if (decoded.includes('\u0000')) return 'the request path contains an encoded NUL';
    if (decoded === '.' || decoded === '..') return 'the request path contains a "." or ".." segment';
    out.push(decoded);
  }
  return out;
}

/** Captures of `template` on `segments`, or undefined when it does not match. */
export function matchTemplate(template: PathTemplate, segments: readonly string[]): Map<string, string> | undefined {
  const captures = new Map<string, string>();
  const t = template.segments;
  for (let i = 0; i < t.length; i++) {
    const s = t[i] as PathTemplate['segments'][number];
    if (s.kind === 'rest') {
      const rest = segments.slice(i).join('/');
      if (rest === '') return undefined;
      captures.set(s.name, rest);
      return captures;
    }
    const seg = segments[i];
    if (seg === undefined) return undefined;
    if (s.kind === 'literal') {
      if (seg !== s.value) return undefined;
    } else {
      if (seg === '') return undefined;
      captures.set(s.name, seg);
    }
  }
  return segments.length === t.length ? captures : undefined;
}

function classifyHttp(tool: CompiledTool, req: HttpRequestAttributes, segments: readonly string[]): ClassifyResult {
  let action: CompiledAction | undefined;
  let captures: Map<string, string> | undefined;
  for (const candidate of tool.routes.get(req.method) ?? []) {
    captures = matchTemplate((candidate.http as NonNullable<CompiledAction['http']>).template, segments);
    if (captures) {
      action = candidate;
      break;
    }
  }
  if (!action?.http || !captures) return fail('unknown-action', `no action of AgentTool ${tool.key} matches this ${req.method} request`, tool);

  const params = new Map<string, unknown>(captures);
  for (const key of action.http.query) {
    if (req.repeatedQueryKeys?.includes(key)) {
      return fail('malformed', `query parameter ${key} is given more than once; servers disagree on which one counts`, tool);
    }
    if (Object.hasOwn(req.query, key)) params.set(key, req.query[key]);
  }
  if (action.http.body.length > 0) {
    const body = readJsonBody(req, false);
    if (!body.ok) return fail(body.reason, body.message, tool);
    if (body.value !== undefined) {
      if (!isPlainObject(body.value)) return fail('malformed', 'the request body must be a JSON object to read its fields', tool);
      pickFields(body.value, action.http.body, params);
    }
  }
  return { ok: true, tool, classified: classifiedOf(tool, action, params) };
}

function classifyMcp(tool: CompiledTool, req: HttpRequestAttributes, segments: readonly string[]): ClassifyResult {
  const expected = tool.mcpSegments ?? [];
  if (segments.length !== expected.length || segments.some((s, i) => s !== expected[i])) {
    return fail('unknown-action', `AgentTool ${tool.key} is an MCP server reached at ${tool.mcpPath ?? '(no mcpPath)'} only`, tool);
  }
  if (req.method !== 'POST') {
    return fail('unknown-action', `only POSTed JSON-RPC messages to AgentTool ${tool.key} are classified, not ${req.method}`, tool);
  }
  const body = readJsonBody(req, true);
  if (!body.ok) return fail(body.reason, body.message, tool);
  const msg = body.value;
  if (Array.isArray(msg)) {
    return fail('malformed', 'JSON-RPC batches are not accepted (MCP 2025-06-18 removed batching); send one message per request', tool);
  }
  if (!isPlainObject(msg)) return fail('malformed', 'the MCP request body must be a JSON-RPC 2.0 object', tool);
  if (msg.jsonrpc !== '2.0') return fail('malformed', 'the MCP request must have "jsonrpc": "2.0"', tool);
  if (!Object.hasOwn(msg, 'method')) {
    if (Object.hasOwn(msg, 'result') || Object.hasOwn(msg, 'error')) {
      return fail('unknown-action', 'JSON-RPC responses to server requests (sampling, roots, elicitation) are not classified', tool);
    }
    return fail('malformed', 'the JSON-RPC message has no method', tool);
  }
  const method = msg.method;
  if (typeof method !== 'string' || method === '') return fail('malformed', 'the JSON-RPC method must be a non-empty string', tool);

  const hasId = Object.hasOwn(msg, 'id');
  if (method.startsWith('notifications/')) {
    if (hasId) return fail('malformed', 'a JSON-RPC notification has no id', tool);
    return { ok: true, tool, classified: builtin(tool, 'mcp.notifications', { method }) };
  }
  const id = msg.id;
  if (!hasId || !(typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) {
    return fail('malformed', 'a JSON-RPC request needs an id that is a string or a number', tool);
  }
  switch (method) {
    case 'initialize':
      return { ok: true, tool, classified: builtin(tool, 'mcp.initialize', { method, id }) };
    case 'ping':
      return { ok: true, tool, classified: builtin(tool, 'mcp.ping', { method, id }) };
    case 'tools/list':
      return { ok: true, tool, classified: builtin(tool, 'mcp.tools.list', { method, id }) };
    case 'tools/call':
      break;
    default:
      return fail('unknown-action', `MCP method ${clip(method)} is not classified (initialize, ping, tools/list, tools/call and notifications/* are)`, tool);
  }

  const p = msg.params;
  if (!isPlainObject(p)) return fail('malformed', 'tools/call needs params with the tool name', tool);
  const name = p.name;
  if (typeof name !== 'string' || name === '') return fail('malformed', 'tools/call needs params.name, the tool name', tool);
  const args = p.arguments ?? {};
  if (!isPlainObject(args)) return fail('malformed', 'tools/call params.arguments must be an object', tool);
  const action = tool.mcpTools.get(name);
  if (!action?.mcp) return fail('unknown-action', `AgentTool ${tool.key} has no action for MCP tool ${clip(name)}`, tool);

  const params = new Map<string, unknown>();
  if (action.mcp.arguments) {
    pickFields(args, action.mcp.arguments, params);
  } else {
    const keys = Object.keys(args);
    if (keys.length > MAX_PARAMS) return fail('malformed', `tools/call has more than ${MAX_PARAMS} arguments`, tool);
    for (const k of keys) params.set(k, args[k]);
  }
  return { ok: true, tool, classified: classifiedOf(tool, action, params, { method, tool: name, id }) };
}

function classifiedOf(tool: CompiledTool, action: CompiledAction, params: Map<string, unknown>, mcp?: Classified['mcp']): Classified {
  return {
    tool: tool.key,
    action: action.name,
    classification: action.classification,
    reversible: action.reversible,
    // fromEntries defines own properties: a parameter named "__proto__" stays a parameter.
    params: Object.fromEntries(params),
    ...(mcp ? { mcp } : {}),
  };
}

function builtin(tool: CompiledTool, action: string, mcp: NonNullable<Classified['mcp']>): Classified {
  return { tool: tool.key, action, classification: 'public', reversible: true, params: {}, mcp };
}

function pickFields(from: Record<string, unknown>, fields: readonly FieldPath[], into: Map<string, unknown>): void {
  for (const f of fields) {
    let cur: unknown = from;
    for (const part of f.parts) {
      if (Array.isArray(cur) && /^\d+$/.test(part)) cur = cur[Number(part)];
      else if (isPlainObject(cur) && Object.hasOwn(cur, part)) cur = cur[part];
      else cur = undefined;
      if (cur === undefined) break;
    }
    if (cur !== undefined) into.set(f.key, cur);
  }
}

type BodyResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: 'malformed' | 'too-large'; readonly message: string };

/**
 * The JSON body, when parameters depend on it. `value` is undefined when the request has no body
 * and says so; a body that was announced but not forwarded, or cut short, cannot be evaluated.
 */
function readJsonBody(req: HttpRequestAttributes, required: boolean): BodyResult {
  if (req.bodyTruncated) {
    return { ok: false, reason: 'too-large', message: 'the request body was cut short before Mandate saw it; its parameters cannot be evaluated' };
  }
  if (!req.body || req.body.length === 0) {
    if (announcesBody(req.headers)) {
      return { ok: false, reason: 'too-large', message: 'the request has a body but it was not forwarded to Mandate, so its parameters cannot be evaluated' };
    }
    return required ? { ok: false, reason: 'malformed', message: 'the request needs a JSON body' } : { ok: true, value: undefined };
  }
  const contentType = checkContentType(req.headers['content-type']);
  if (contentType) return { ok: false, reason: 'malformed', message: contentType };
  const parsed = parseJsonStrict(req.body, MAX_JSON_DEPTH);
  return parsed.ok ? parsed : { ok: false, reason: 'malformed', message: parsed.message };
}

function announcesBody(headers: Readonly<Record<string, string>>): boolean {
  const length = headers['content-length'];
  if (length !== undefined && length.trim() !== '0') return true;
  return headers['transfer-encoding'] !== undefined;
}

/** undefined when the content type is JSON in UTF-8; otherwise why not. */
function checkContentType(value: string | undefined): string | undefined {
  if (value === undefined) return 'the request body has no content-type; application/json is required';
  const [type, ...params] = value.split(';');
  if (!/^application\/([a-z0-9.+-]+\+)?json$/.test((type ?? '').trim().toLowerCase())) {
    return 'the request body must have content-type application/json';
  }
  for (const p of params) {
    const [k, v] = p.split('=').map((s) => s.trim().toLowerCase());
    if (k === 'charset' && v !== 'utf-8' && v !== 'utf8' && v !== '"utf-8"') return 'a JSON request body must be UTF-8';
  }
  return undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON.parse plus what it does not check: nesting depth, and duplicate member names (which
 * JSON.parse resolves to the last one while other parsers take the first, so a policy could be
 * shown one value and the server use the other).
 */
export function parseJsonStrict(bytes: Uint8Array, maxDepth: number): { ok: true; value: unknown } | { ok: false; message: string } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, message: 'the request body is not valid UTF-8' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, message: 'the request body is not valid JSON' };
  }
  // The text is valid JSON now, so a small scanner that only tracks strings and brackets is exact.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      for (let d = text.charCodeAt(j); d !== 0x22; d = text.charCodeAt(j)) {
        if (d === 0x5c) {
          escaped = true;
          j += 2;
        } else {
          j += 1;
        }
      }
      if (expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        const keys = stack[stack.length - 1];
        if (keys?.has(key)) return { ok: false, message: `the request body has the member ${clip(key)} twice in one object` };
        keys?.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) {
      stack.push(c === 0x7b ? new Set() : null);
      if (stack.length > maxDepth) return { ok: false, message: `the request body is nested deeper than ${maxDepth} levels` };
      expectKey = c === 0x7b;
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c) {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return { ok: true, value };
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const clip = (s: string): string => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
