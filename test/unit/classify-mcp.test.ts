import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_PARAMS, classify, type ClassifyResult } from '../../controller/src/authz/classify.ts';
import { compileTools } from '../../controller/src/authz/tools.ts';
import type { HttpRequestAttributes } from '../../controller/src/authz/types.ts';
import { fixtureSnapshot } from '../fixtures/checkrequests/snapshot.ts';

const { index } = compileTools(fixtureSnapshot());
const limits = { maxBodyBytes: 64 * 1024 };

function mcp(message: unknown, extra: Partial<HttpRequestAttributes> = {}): ClassifyResult {
  const req: HttpRequestAttributes = {
    id: 'r',
    method: 'POST',
    host: 'mcp.payments.example',
    path: '/mcp',
    query: {},
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    scheme: 'https',
    body: Buffer.from(typeof message === 'string' ? message : JSON.stringify(message)),
    bodyTruncated: false,
    ...extra,
  };
  return classify(index, 'shop', req, limits);
}
const call = (name: string, args?: unknown, id: unknown = 1): unknown => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, ...(args === undefined ? {} : { arguments: args }) },
});

function ok(r: ClassifyResult): Extract<ClassifyResult, { ok: true }> {
  if (!r.ok) assert.fail(`${r.reason}: ${r.message}`);
  return r;
}
function fails(r: ClassifyResult, reason: string, message: RegExp): void {
  if (r.ok) assert.fail(`expected ${reason}, got ${r.classified.action}`);
  assert.equal(r.reason, reason);
  assert.equal(r.httpStatus, reason === 'malformed' ? 400 : reason === 'too-large' ? 413 : 403);
  assert.match(r.message, message);
}

test('tools/call maps the MCP tool name to the action and picks the listed arguments', () => {
  const r = ok(mcp(call('create_refund', { amount: 1500, currency: 'EUR', order: { id: 'A-1', lines: 3 }, note: 'n' }, 42)));
  assert.equal(r.classified.action, 'payments.refund.create');
  assert.equal(r.classified.tool, 'shop/payments');
  assert.equal(r.classified.classification, 'confidential');
  assert.equal(r.classified.reversible, false);
  assert.deepEqual({ ...r.classified.params }, { amount: 1500, currency: 'EUR', 'order.id': 'A-1' });
  assert.deepEqual(r.classified.mcp, { method: 'tools/call', tool: 'create_refund', id: 42 });
});

test('without listed arguments, all top-level arguments become params', () => {
  const r = ok(mcp(call('lookup_order', { orderId: 'A-1', include: ['lines'], deep: { a: { b: 1 } } }, 'abc')));
  assert.equal(r.classified.action, 'payments.order.lookup');
  assert.deepEqual({ ...r.classified.params }, { orderId: 'A-1', include: ['lines'], deep: { a: { b: 1 } } });
  assert.deepEqual(r.classified.mcp, { method: 'tools/call', tool: 'lookup_order', id: 'abc' });
  assert.deepEqual({ ...ok(mcp(call('lookup_order'))).classified.params }, {}, 'arguments are optional');
});

test('protocol methods map to the built-in public, reversible actions', () => {
  const table: [unknown, string, string][] = [
    [{ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'c', version: '1' } } }, 'mcp.initialize', 'initialize'],
    [{ jsonrpc: '2.0', id: 2, method: 'ping' }, 'mcp.ping', 'ping'],
    [{ jsonrpc: '2.0', id: 3, method: 'tools/list', params: { cursor: 'x' } }, 'mcp.tools.list', 'tools/list'],
    [{ jsonrpc: '2.0', method: 'notifications/initialized' }, 'mcp.notifications', 'notifications/initialized'],
    [{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } }, 'mcp.notifications', 'notifications/cancelled'],
  ];
  for (const [message, action, method] of table) {
    const r = ok(mcp(message));
    assert.equal(r.classified.action, action);
    assert.equal(r.classified.classification, 'public');
    assert.equal(r.classified.reversible, true);
    assert.deepEqual({ ...r.classified.params }, {});
    assert.equal(r.classified.mcp?.method, method);
  }
});

test('other methods, unknown tools and client responses are unknown actions (403)', () => {
  fails(mcp({ jsonrpc: '2.0', id: 1, method: 'resources/read', params: { uri: 'file:///etc/passwd' } }), 'unknown-action', /MCP method "resources\/read" is not classified/);
  fails(mcp({ jsonrpc: '2.0', id: 1, method: 'prompts/get' }), 'unknown-action', /not classified/);
  fails(mcp(call('drop_database', {})), 'unknown-action', /AgentTool shop\/payments has no action for MCP tool "drop_database"/);
  fails(mcp({ jsonrpc: '2.0', id: 9, result: {} }), 'unknown-action', /responses to server requests/);
  fails(mcp(call('x'.repeat(500))), 'unknown-action', /…"/);
});

test('only POST to mcpPath is classified', () => {
  fails(mcp(call('create_refund'), { path: '/other' }), 'unknown-action', /reached at \/mcp only/);
  fails(mcp(call('create_refund'), { path: '/mcp/' }), 'unknown-action', /reached at \/mcp only/);
  fails(mcp(call('create_refund'), { method: 'GET', body: undefined }), 'unknown-action', /not GET/);
  fails(mcp(call('create_refund'), { method: 'DELETE' }), 'unknown-action', /not DELETE/);
  assert.equal(ok(mcp(call('create_refund'), { path: '/%6dcp' })).classified.action, 'payments.refund.create');
});

test('malformed JSON-RPC is refused (400) with a clear message', () => {
  fails(mcp([call('create_refund'), { jsonrpc: '2.0', id: 2, method: 'ping' }]), 'malformed', /batches are not accepted \(MCP 2025-06-18 removed batching\)/);
  fails(mcp('"just a string"'), 'malformed', /JSON-RPC 2\.0 object/);
  fails(mcp({ jsonrpc: '1.0', id: 1, method: 'ping' }), 'malformed', /"jsonrpc": "2\.0"/);
  fails(mcp({ id: 1, method: 'ping' }), 'malformed', /"jsonrpc": "2\.0"/);
  fails(mcp({ jsonrpc: '2.0', id: 1 }), 'malformed', /no method/);
  fails(mcp({ jsonrpc: '2.0', id: 1, method: 5 }), 'malformed', /method must be a non-empty string/);
  fails(mcp({ jsonrpc: '2.0', method: 'ping' }), 'malformed', /needs an id/);
  fails(mcp({ jsonrpc: '2.0', id: null, method: 'ping' }), 'malformed', /needs an id/);
  fails(mcp({ jsonrpc: '2.0', id: { x: 1 }, method: 'ping' }), 'malformed', /needs an id/);
  fails(mcp({ jsonrpc: '2.0', id: 1, method: 'notifications/initialized' }), 'malformed', /notification has no id/);
  fails(mcp({ jsonrpc: '2.0', id: 1, method: 'tools/call' }), 'malformed', /needs params/);
  fails(mcp({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { arguments: {} } }), 'malformed', /params\.name/);
  fails(mcp(call('create_refund', [1, 2])), 'malformed', /arguments must be an object/);
  fails(mcp('{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}'), 'malformed', /member "id" twice/);
  fails(mcp(call('create_refund', { amount: 1, amount2: 2 }), { headers: {} }), 'malformed', /content-type/);
  fails(mcp('', { body: undefined }), 'malformed', /needs a JSON body/);
  fails(mcp('{"jsonrpc":'), 'malformed', /not valid JSON/);
});

test('a duplicated argument cannot smuggle a second value past the policy', () => {
  const body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_refund","arguments":{"amount":10,"amount":100000}}}';
  fails(mcp(body), 'malformed', /member "amount" twice/);
});

test('bounds: too many arguments, truncated and oversized bodies', () => {
  const many = Object.fromEntries(Array.from({ length: MAX_PARAMS + 1 }, (_, i) => [`k${i}`, i]));
  fails(mcp(call('lookup_order', many)), 'malformed', new RegExp(`more than ${MAX_PARAMS} arguments`));
  fails(mcp(call('create_refund', { amount: 1 }), { bodyTruncated: true }), 'too-large', /cut short/);
  fails(mcp(call('lookup_order', { blob: 'x'.repeat(70 * 1024) })), 'too-large', /65536 bytes/);
  fails(mcp('', { body: undefined, headers: { 'content-type': 'application/json', 'content-length': '300' } }), 'too-large', /not forwarded/);
});
