// Envoy CheckRequests for the load mix, in the proto field names (snake_case): ghz reads them as
// proto3 JSON, which accepts proto names, and grpc-js (keepCase) takes the same objects, so one
// set of messages drives both the load and the one-pass verification of the mix. The requests
// look like what an Envoy sidecar sends for an agent's outbound call: pseudo-headers, a tracing
// header, a request id, and the body for JSON calls (with_request_body on).
import type { CatalogAction, ParamSpec } from './catalog.ts';

export type ParamValues = Readonly<Record<string, string | number>>;

export interface HttpCall {
  readonly method: string;
  readonly host: string;
  readonly scheme: string;
  /** Path with query string, as Envoy puts it in `path`. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

let sequence = 0;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0').slice(-width);
}

/** A CheckRequest as Envoy's ext_authz filter builds it for an outbound HTTP call of the app. */
export function checkRequest(call: HttpCall, seq: number = ++sequence): Record<string, unknown> {
  const id = `${hex(seq * 2654435761, 8)}-${hex(seq, 4)}-4${hex(seq * 31, 3)}-a${hex(seq * 17, 3)}-${hex(seq * 40503, 12)}`;
  const headers: Record<string, string> = {
    ':authority': call.host,
    ':method': call.method,
    ':path': call.path,
    ':scheme': call.scheme,
    'user-agent': 'python-httpx/0.27.2',
    accept: call.body === undefined ? 'application/json' : 'application/json, text/event-stream',
    'accept-encoding': 'gzip, deflate',
    'x-request-id': id,
    'x-forwarded-proto': call.scheme,
    traceparent: `00-${hex(seq * 97, 16)}${hex(seq * 89, 16)}-${hex(seq * 83, 16)}-01`,
    ...(call.body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(call.body)) } : {}),
    ...call.headers,
  };
  const http: Record<string, unknown> = {
    id,
    method: call.method,
    headers,
    path: call.path,
    host: call.host,
    scheme: call.scheme,
    protocol: 'HTTP/1.1',
  };
  if (call.body !== undefined) {
    http.body = call.body;
    http.size = String(Buffer.byteLength(call.body));
  }
  return {
    attributes: {
      source: { address: { socket_address: { address: `10.42.${seq % 250}.${(seq * 7) % 250}`, port_value: 40000 + (seq % 20000) } } },
      destination: { address: { socket_address: { address: '10.96.0.10', port_value: call.scheme === 'https' ? 443 : 80 } } },
      request: { http },
    },
  };
}

function valueOf(p: ParamSpec, values: ParamValues): string | number {
  const given = values[p.name];
  if (given !== undefined) return given;
  if (p.numeric) return 120;
  if (p.source === 'rest') return 'reports/2026/q3.md';
  return `bench-${p.name.replace(/[^A-Za-z0-9]/g, '').toLowerCase()}-7`;
}

/** Puts `value` at a dotted path of a JSON object. */
function setDotted(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (next && typeof next === 'object' && !Array.isArray(next)) node = next as Record<string, unknown>;
    else {
      const created: Record<string, unknown> = {};
      node[part] = created;
      node = created;
    }
  }
  node[parts[parts.length - 1]!] = value;
}

/** The HTTP call an agent makes for `action`, with its params set from `values` (defaults otherwise). */
export function callFor(action: CatalogAction, values: ParamValues = {}, mcpId = 1): HttpCall {
  const host = action.port !== undefined ? `${action.host}:${action.port}` : action.host;
  if (action.protocol === 'MCP') {
    const args: Record<string, unknown> = {};
    for (const p of action.params) setDotted(args, p.name, valueOf(p, values));
    const body = JSON.stringify({ jsonrpc: '2.0', id: mcpId, method: 'tools/call', params: { name: action.mcpTool, arguments: args } });
    return {
      method: 'POST',
      host,
      scheme: action.scheme,
      path: action.mcpPath ?? '/mcp',
      headers: { 'mcp-session-id': `bench-session-${mcpId % 8}`, 'mcp-protocol-version': '2025-06-18' },
      body,
    };
  }
  const http = action.http!;
  let path = http.path.replace(/\{([A-Za-z0-9_]+)(\.\.\.)?\}/g, (_m, name: string, rest: string | undefined) => {
    const spec = action.params.find((p) => p.name === name);
    const v = String(spec ? valueOf(spec, values) : `bench-${name}`);
    return rest ? v.split('/').map(encodeURIComponent).join('/') : encodeURIComponent(v);
  });
  const query = action.params.filter((p) => p.source === 'query');
  if (query.length > 0) {
    path += `?${query.map((p) => `${encodeURIComponent(p.name)}=${encodeURIComponent(String(valueOf(p, values)))}`).join('&')}`;
  }
  const bodyParams = action.params.filter((p) => p.source === 'body');
  let body: string | undefined;
  if (bodyParams.length > 0 || ['POST', 'PUT', 'PATCH'].includes(http.method)) {
    const obj: Record<string, unknown> = {};
    for (const p of bodyParams) setDotted(obj, p.name, valueOf(p, values));
    body = JSON.stringify(obj);
  }
  return { method: http.method, host, scheme: action.scheme, path, ...(body !== undefined ? { body } : {}) };
}
