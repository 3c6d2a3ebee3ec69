import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, matchTemplate, parseJsonStrict, splitPath, type ClassifyResult } from '../../controller/src/authz/classify.ts';
import { compileTools, parseTemplate } from '../../controller/src/authz/tools.ts';
import type { HttpRequestAttributes } from '../../controller/src/authz/types.ts';
import { fixtureSnapshot, snapshotOf, tool } from '../fixtures/checkrequests/snapshot.ts';

const { index } = compileTools(fixtureSnapshot());
const limits = { maxBodyBytes: 4096 };

function request(method: string, url: string, extra: Partial<HttpRequestAttributes> = {}): HttpRequestAttributes {
  const u = new URL(url);
  const query: Record<string, string> = {};
  for (const [k, v] of u.searchParams) if (!(k in query)) query[k] = v;
  return {
    id: 'req-1',
    method,
    host: u.hostname,
    ...(u.port ? { port: Number(u.port) } : {}),
    // URL would normalise dot segments and encodings away; take the raw path from the text.
    path: url.replace(/^[a-z]+:\/\/[^/]+/, '').split('?')[0] as string,
    query,
    headers: {},
    scheme: u.protocol.replace(':', ''),
    bodyTruncated: false,
    ...extra,
  };
}
const json = (value: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Partial<HttpRequestAttributes> => ({
  body: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
  headers,
});

function expectOk(r: ClassifyResult, action: string, params: Record<string, unknown>, tool = 'shop/github'): void {
  if (!r.ok) assert.fail(`expected ${action}, got ${r.reason}: ${r.message}`);
  assert.equal(r.classified.action, action);
  assert.equal(r.classified.tool, tool);
  assert.deepEqual({ ...r.classified.params }, params);
}
function expectFail(r: ClassifyResult, reason: string, status: number, message?: RegExp): void {
  if (r.ok) assert.fail(`expected ${reason}, got action ${r.classified.action}`);
  assert.equal(r.reason, reason);
  assert.equal(r.httpStatus, status);
  if (message) assert.match(r.message, message);
}
const run = (method: string, url: string, extra?: Partial<HttpRequestAttributes>, ns = 'shop'): ClassifyResult => classify(index, ns, request(method, url, extra), limits);

test('HTTP classification table', () => {
  const table: [string, string, Partial<HttpRequestAttributes> | undefined, string, Record<string, unknown>][] = [
    ['GET', 'https://api.github.com/repos/acme/widgets/issues/12', undefined, 'github.issue.get', { owner: 'acme', repo: 'widgets', number: '12' }],
    ['GET', 'https://api.github.com/repos/acme/widgets/issues?state=open&per_page=50&page=2', undefined, 'github.issues.list', { owner: 'acme', repo: 'widgets', state: 'open', per_page: '50' }],
    ['GET', 'https://api.github.com/repos/acme/widgets/pulls', undefined, 'github.repo.any', { owner: 'acme', repo: 'widgets', what: 'pulls' }],
    ['DELETE', 'https://api.github.com/repos/acme/widgets/git/refs/heads/feature/login', undefined, 'github.branch.delete', { owner: 'acme', repo: 'widgets', branch: 'feature/login' }],
    ['DELETE', 'https://api.github.com/repos/acme/widgets/git/refs/tags/v1.0', undefined, 'github.ref.delete', { owner: 'acme', repo: 'widgets', ref: 'tags/v1.0' }],
    ['GET', 'https://api.github.com/repos/acme/widgets/contents/src/app/main.ts', undefined, 'github.contents.get', { owner: 'acme', repo: 'widgets', path: 'src/app/main.ts' }],
    // Percent-encoding: captures and literals are compared decoded, segment by segment.
    ['GET', 'https://api.github.com/repos/acme/my%20widgets/issues/%31%32', undefined, 'github.issue.get', { owner: 'acme', repo: 'my widgets', number: '12' }],
    ['GET', 'https://api.github.com/%72epos/acme/widgets/%69ssues/7', undefined, 'github.issue.get', { owner: 'acme', repo: 'widgets', number: '7' }],
    ['GET', 'https://api.github.com/repos/acme/widgets/contents/a%20b/c', undefined, 'github.contents.get', { owner: 'acme', repo: 'widgets', path: 'a b/c' }],
    ['GET', 'https://api.github.com:443/repos/a/b/issues/1', undefined, 'github.issue.get', { owner: 'a', repo: 'b', number: '1' }],
  ];
  for (const [method, url, extra, action, params] of table) expectOk(run(method, url, extra), action, params);
});

test('body fields are read from JSON, dotted paths keep their names, missing fields are absent', () => {
  const r = run('POST', 'https://api.github.com/repos/acme/widgets/issues', json({ title: 'T', labels: ['bug'], milestone: { number: 7 }, body: 'ignored' }));
  expectOk(r, 'github.issue.create', { owner: 'acme', repo: 'widgets', title: 'T', labels: ['bug'], 'milestone.number': 7 });
  expectOk(run('POST', 'https://api.github.com/repos/acme/widgets/issues', json({ title: 'only' })), 'github.issue.create', { owner: 'acme', repo: 'widgets', title: 'only' });
  expectOk(run('PUT', 'https://api.github.com/repos/a/b/pulls/3/merge', json({ merge_method: 'squash' }, { 'content-type': 'application/vnd.github+json; charset=utf-8' })), 'github.pr.merge', {
    owner: 'a',
    repo: 'b',
    number: '3',
    merge_method: 'squash',
  });
  // No body and none announced: the parameters are simply absent.
  expectOk(run('PUT', 'https://api.github.com/repos/a/b/pulls/3/merge'), 'github.pr.merge', { owner: 'a', repo: 'b', number: '3' });
});

test('array indexes in dotted fields', () => {
  const t = tool('ns', 'arr', { hosts: ['arr.example'], actions: [{ name: 'a.post', http: { method: 'POST', path: '/', body: ['items.0.sku', 'items.9.sku'] } }] });
  const { index: idx } = compileTools(snapshotOf([t]));
  const r = classify(idx, 'ns', request('POST', 'https://arr.example/', json({ items: [{ sku: 'X1' }] })), limits);
  expectOk(r, 'a.post', { 'items.0.sku': 'X1' }, 'ns/arr');
});

test('the body is not read when the action takes no body fields', () => {
  const r = run('DELETE', 'https://api.github.com/repos/a/b/git/refs/heads/x', { body: Buffer.from('not json'), headers: { 'content-type': 'text/plain' }, bodyTruncated: true });
  expectOk(r, 'github.branch.delete', { owner: 'a', repo: 'b', branch: 'x' });
});

test('unknown destinations and actions are denied 403', () => {
  expectFail(run('GET', 'https://evil.example.com/'), 'unknown-destination', 403, /no AgentTool in namespace shop serves host evil\.example\.com/);
  expectFail(run('GET', 'https://api.github.com/search/code', undefined, 'elsewhere'), 'unknown-destination', 403);
  expectFail(run('GET', 'https://api.github.com/search/code'), 'unknown-action', 403, /no action of AgentTool shop\/github matches this GET request/);
  expectFail(run('PATCH', 'https://api.github.com/repos/a/b/issues/1'), 'unknown-action', 403);
  expectFail(run('HEAD', 'https://api.github.com/repos/a/b/issues/1'), 'unknown-action', 403, /HEAD/);
  expectFail(run('get', 'https://api.github.com/repos/a/b/issues/1'), 'unknown-action', 403, /get/);
  expectFail(run('GET', 'https://api.github.com/repos/a/b/issues/1/'), 'unknown-action', 403);
  expectFail(run('GET', 'https://api.github.com/repos//b/issues/1'), 'unknown-action', 403);
  expectFail(run('GET', 'https://api.github.com/repos/a/b/contents/'), 'unknown-action', 403);
  const r = run('GET', 'https://api.github.com/search/code');
  assert.equal(!r.ok && r.tool?.key, 'shop/github', 'the tool is reported when known');
});

test('port: a tool with a port serves that port only', () => {
  expectOk(run('GET', 'http://inventory.svc.acme.internal:8080/items'), 'inventory.items.list', {}, 'shop/inventory');
  expectFail(run('GET', 'http://inventory.svc.acme.internal:9090/items'), 'unknown-destination', 403, /port 8080 only/);
  expectFail(run('GET', 'http://inventory.svc.acme.internal/items'), 'unknown-destination', 403, /port 8080 only/);
  expectOk(run('GET', 'http://orders.svc.acme.internal:1234/a/b'), 'svc.any', { rest: 'a/b' }, 'shop/internal-svc');
});

test('ambiguous paths are malformed (400)', () => {
  const cases: [string, RegExp][] = [
    ['/repos/acme/widgets/../../admin', /"\." or "\.\." segment/],
    ['/repos/acme/widgets/%2e%2e/x', /"\." or "\.\." segment/],
    ['/repos/acme/./issues/1', /"\." or "\.\." segment/],
    ['/repos/acme/wid%2Fgets/issues/1', /encoded "\/"/],
    ['/repos/acme/wid%5cgets/issues/1', /encoded "\/"/],
    ['/repos/acme/wid\\gets/issues/1', /encoded "\/"/],
    ['/repos/acme/%E0%A4%A/issues', /percent-encoding/],
    ['/repos/acme/%00/issues', /NUL/],
    ['/' + 'a/'.repeat(300), /more than 256 segments/],
  ];
  for (const [path, message] of cases) {
    expectFail(classify(index, 'shop', { ...request('GET', 'https://api.github.com/'), path }, limits), 'malformed', 400, message);
  }
});

test('a repeated query key is refused only when the action takes it', () => {
  const r = run('GET', 'https://api.github.com/repos/a/b/issues?state=open', { repeatedQueryKeys: ['state'] });
  expectFail(r, 'malformed', 400, /query parameter state is given more than once/);
  expectOk(run('GET', 'https://api.github.com/repos/a/b/issues?x=1', { repeatedQueryKeys: ['x'] }), 'github.issues.list', { owner: 'a', repo: 'b' });
});

test('body problems: wrong content type, bad JSON, duplicates, depth, truncation, size', () => {
  const url = 'https://api.github.com/repos/a/b/issues';
  expectFail(run('POST', url, json({ title: 'x' }, {})), 'malformed', 400, /no content-type/);
  expectFail(run('POST', url, json({ title: 'x' }, { 'content-type': 'text/plain' })), 'malformed', 400, /application\/json/);
  expectFail(run('POST', url, json({ title: 'x' }, { 'content-type': 'application/json; charset=latin1' })), 'malformed', 400, /UTF-8/);
  expectFail(run('POST', url, json('{"title":')), 'malformed', 400, /not valid JSON/);
  expectFail(run('POST', url, { ...json(''), body: Buffer.from([0x7b, 0xff, 0x7d]) }), 'malformed', 400, /UTF-8/);
  expectFail(run('POST', url, json('["title"]')), 'malformed', 400, /JSON object/);
  expectFail(run('POST', url, json('{"title":"a","title":"b"}')), 'malformed', 400, /member "title" twice/);
  expectFail(run('POST', url, json('{"t\\u0069tle":"a","title":"b"}')), 'malformed', 400, /member "title" twice/);
  expectFail(run('POST', url, json(`{"title":${'['.repeat(70)}${']'.repeat(70)}}`)), 'malformed', 400, /deeper than 64/);
  expectFail(run('POST', url, { ...json({ title: 'x' }), bodyTruncated: true }), 'too-large', 413, /cut short/);
  expectFail(run('POST', url, { headers: { 'content-type': 'application/json', 'content-length': '120' } }), 'too-large', 413, /not forwarded/);
  expectFail(run('POST', url, { headers: { 'transfer-encoding': 'chunked' } }), 'too-large', 413, /not forwarded/);
  expectFail(run('POST', url, json({ title: 'x'.repeat(5000) })), 'too-large', 413, /4096 bytes/);
});

test('parseJsonStrict: duplicates only within one object, strings with brackets and escapes', () => {
  assert.deepEqual(parseJsonStrict(Buffer.from('{"a":{"a":1},"b":[{"a":2},{"a":3}]}'), 8), { ok: true, value: { a: { a: 1 }, b: [{ a: 2 }, { a: 3 }] } });
  assert.equal(parseJsonStrict(Buffer.from('{"a":"}{\\"a\\":","b":"[[["}'), 2).ok, true);
  assert.equal(parseJsonStrict(Buffer.from('{"a":1,"b":{"c":1,"c":2}}'), 8).ok, false);
  assert.equal(parseJsonStrict(Buffer.from('[[[]]]'), 3).ok, true);
  assert.equal(parseJsonStrict(Buffer.from('[[[[]]]]'), 3).ok, false);
  const deep = Buffer.from('['.repeat(100_000) + ']'.repeat(100_000));
  const r = parseJsonStrict(deep, 64);
  assert.equal(r.ok, false, 'a very deep document is refused, not a crash');
});

test('a __proto__ parameter stays a parameter', () => {
  const t = tool('ns', 'p', { hosts: ['p.example'], actions: [{ name: 'p.post', http: { method: 'POST', path: '/', body: ['__proto__', 'constructor'] } }] });
  const { index: idx } = compileTools(snapshotOf([t]));
  const r = classify(idx, 'ns', request('POST', 'https://p.example/', json('{"__proto__":{"admin":true}}')), limits);
  if (!r.ok) assert.fail(r.message);
  assert.equal(Object.getPrototypeOf(r.classified.params), Object.prototype);
  assert.deepEqual(r.classified.params.__proto__, { admin: true });
  assert.equal(Object.hasOwn(r.classified.params, 'constructor'), false, 'inherited names are not fields');
});

test('splitPath and matchTemplate', () => {
  assert.deepEqual(splitPath('/'), ['']);
  assert.deepEqual(splitPath('/a/%7Eb/'), ['a', '~b', '']);
  const t = parseTemplate('/', () => assert.fail());
  assert.ok(t);
  assert.deepEqual(matchTemplate(t, ['']), new Map());
  assert.equal(matchTemplate(t, ['a']), undefined);
});

test('classification carries the action metadata', () => {
  const r = run('DELETE', 'https://api.github.com/repos/a/b/git/refs/heads/x');
  if (!r.ok) assert.fail(r.message);
  assert.equal(r.classified.reversible, false);
  assert.equal(r.classified.classification, 'internal', 'the CRD default');
  assert.equal(r.classified.mcp, undefined);
  assert.equal(r.tool.key, 'shop/github');
});
