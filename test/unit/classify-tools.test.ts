import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { compileTools, findTool, parseTemplate } from '../../controller/src/authz/tools.ts';
import {
  GITHUB_TOKEN,
  PAYMENTS_KEY,
  fixtureSecrets,
  fixtureSnapshot,
  githubTool,
  paymentsTool,
  secret,
  snapshotOf,
  tool,
} from '../fixtures/checkrequests/snapshot.ts';

test('the fixture snapshot compiles without problems', () => {
  const { index, problems } = compileTools(fixtureSnapshot());
  assert.deepEqual(problems, []);
  assert.equal(index.revision, 1);
  assert.deepEqual([...index.tools.keys()].sort(), [
    'research/github',
    'shop/github',
    'shop/internal-svc',
    'shop/internal-wide',
    'shop/inventory',
    'shop/payments',
  ]);
  const gh = index.tools.get('shop/github');
  assert.equal(gh?.protocol, 'HTTP');
  assert.equal(gh?.scheme, 'https');
  assert.equal(gh?.intercept, true);
  assert.equal(gh?.generation, 1);
  assert.equal(gh?.actions.size, 8);
  const refund = index.tools.get('shop/payments')?.mcpTools.get('create_refund');
  assert.equal(refund?.name, 'payments.refund.create');
  assert.equal(refund?.classification, 'confidential');
  assert.equal(refund?.reversible, false);
  assert.deepEqual(refund?.mcp?.arguments?.map((a) => a.parts), [['amount'], ['currency'], ['order', 'id']]);
  assert.equal(index.tools.get('shop/payments')?.mcpTools.get('lookup_order')?.mcp?.arguments, undefined);
  assert.deepEqual(index.tools.get('shop/payments')?.mcpSegments, ['mcp']);
});

test('credentials render once, trimmed, with defaults, and never print', () => {
  const { index } = compileTools(fixtureSnapshot());
  const gh = index.tools.get('shop/github')?.credential;
  assert.deepEqual({ ...gh }, { secret: 'shop/github-token', header: 'authorization', value: `Bearer ${GITHUB_TOKEN}` });
  const pay = index.tools.get('shop/payments')?.credential;
  assert.deepEqual({ ...pay }, { secret: 'shop/payments', header: 'x-api-key', value: PAYMENTS_KEY });
  const printed = [JSON.stringify(index.tools.get('shop/github')), inspect(index.tools.get('shop/github'), { depth: 10 }), JSON.stringify(pay), inspect(pay)];
  for (const text of printed) {
    assert.equal(text.includes(GITHUB_TOKEN), false);
    assert.equal(text.includes(PAYMENTS_KEY), false);
  }
  assert.match(JSON.stringify(gh), /\[redacted\]/);
});

test('credential problems name the field and never the value; the tool serves nothing', () => {
  const noSecret = tool('ns', 'a', { hosts: ['a.example'], credential: { secretRef: { name: 'missing', key: 'k' } } });
  const noKey = tool('ns', 'b', { hosts: ['b.example'], credential: { secretRef: { name: 's', key: 'absent' } } });
  const badValue = tool('ns', 'c', { hosts: ['c.example'], credential: { secretRef: { name: 's', key: 'crlf' } } });
  const badHeader = tool('ns', 'd', { hosts: ['d.example'], credential: { secretRef: { name: 's', key: 'ok' }, header: 'x-mandate-token' } });
  const badTemplate = tool('ns', 'e', { hosts: ['e.example'], credential: { secretRef: { name: 's', key: 'ok' }, template: 'Bearer' } });
  const hostHeader = tool('ns', 'f', { hosts: ['f.example'], credential: { secretRef: { name: 's', key: 'ok' }, header: 'host' } });
  const secrets = [secret('ns', 's', { ok: 'sekret-ok', crlf: 'line1\r\nX-Injected: sekret-crlf' })];
  const { index, problems } = compileTools(snapshotOf([noSecret, noKey, badValue, badHeader, badTemplate, hostHeader], secrets));
  const byObject = new Map(problems.map((p) => [p.object, p]));
  assert.deepEqual(byObject.get('AgentTool ns/a'), { object: 'AgentTool ns/a', field: '.spec.credential.secretRef', message: 'Secret ns/missing not found' });
  assert.equal(byObject.get('AgentTool ns/b')?.field, '.spec.credential.secretRef');
  assert.match(byObject.get('AgentTool ns/b')?.message ?? '', /no \(non-empty\) key absent/);
  assert.match(byObject.get('AgentTool ns/c')?.message ?? '', /control characters/);
  assert.equal(byObject.get('AgentTool ns/d')?.field, '.spec.credential.header');
  assert.equal(byObject.get('AgentTool ns/e')?.field, '.spec.credential.template');
  assert.equal(byObject.get('AgentTool ns/f')?.field, '.spec.credential.header');
  assert.equal(JSON.stringify(problems).includes('sekret'), false, 'no secret value in any problem');
  assert.equal(index.tools.size, 0);
  const lookup = findTool(index, 'ns', 'a.example');
  assert.equal(lookup.found, false);
  assert.match(lookup.found ? '' : lookup.message, /AgentTool ns\/a serves host a\.example but has manifest problems/);
});

test('host index: exact beats wildcard, the longest wildcard wins, wildcards need a label', () => {
  const { index } = compileTools(fixtureSnapshot());
  const key = (ns: string, host: string): string | undefined => {
    const r = findTool(index, ns, host);
    return r.found ? r.tool.key : undefined;
  };
  assert.equal(key('shop', 'inventory.svc.acme.internal'), 'shop/inventory');
  assert.equal(key('shop', 'orders.svc.acme.internal'), 'shop/internal-svc');
  assert.equal(key('shop', 'a.b.svc.acme.internal'), 'shop/internal-svc');
  assert.equal(key('shop', 'wiki.acme.internal'), 'shop/internal-wide');
  assert.equal(key('shop', 'x.y.acme.internal'), 'shop/internal-wide');
  assert.equal(key('shop', 'acme.internal'), undefined, '*.acme.internal does not match the bare domain');
  assert.equal(key('shop', 'svc.acme.internal'), 'shop/internal-wide');
  assert.equal(key('shop', 'evilacme.internal'), undefined);
  assert.equal(key('shop', 'acme.internal.evil.com'), undefined);
});

test('namespaces: a caller sees only the tools of its own namespace', () => {
  const { index } = compileTools(fixtureSnapshot());
  const shop = findTool(index, 'shop', 'api.github.com');
  const research = findTool(index, 'research', 'api.github.com');
  assert.equal(shop.found && shop.tool.key, 'shop/github');
  assert.equal(research.found && research.tool.key, 'research/github');
  const none = findTool(index, 'elsewhere', 'api.github.com');
  assert.equal(none.found, false);
  assert.match(none.found ? '' : none.message, /no AgentTool in namespace elsewhere serves host api\.github\.com/);
  assert.equal(findTool(index, 'research', 'mcp.payments.example').found, false);
});

test('two tools claiming one host in a namespace: a problem for each, and neither serves it', () => {
  const a = tool('ns', 'a', { hosts: ['api.example.com', 'only-a.example.com'] });
  const b = tool('ns', 'b', { hosts: ['api.example.com'] });
  const c = tool('ns', 'c', { hosts: ['*.wild.example'] });
  const d = tool('ns', 'd', { hosts: ['*.wild.example'] });
  const { index, problems } = compileTools(snapshotOf([a, b, c, d]));
  assert.deepEqual(
    problems.map((p) => `${p.object} ${p.field}`),
    ['AgentTool ns/a .spec.hosts', 'AgentTool ns/b .spec.hosts', 'AgentTool ns/c .spec.hosts', 'AgentTool ns/d .spec.hosts'],
  );
  assert.match(problems[0]?.message ?? '', /host api\.example\.com is also claimed by AgentTool ns\/b/);
  const r = findTool(index, 'ns', 'api.example.com');
  assert.equal(r.found, false);
  assert.match(r.found ? '' : r.message, /claimed by several AgentTools \(ns\/a, ns\/b\)/);
  assert.equal(findTool(index, 'ns', 'x.wild.example').found, false);
  const onlyA = findTool(index, 'ns', 'only-a.example.com');
  assert.equal(onlyA.found && onlyA.tool.key, 'ns/a', 'the uncontested host still works');
});

test('action problems exclude the action and name its field', () => {
  const t = tool('ns', 't', {
    hosts: ['t.example'],
    actions: [
      { name: 'ok.get', http: { method: 'GET', path: '/ok/{id}' } },
      { name: 'bad.rest', http: { method: 'GET', path: '/a/{rest...}/b' } },
      { name: 'bad.partial', http: { method: 'GET', path: '/a/x{id}' } },
      { name: 'bad.twice', http: { method: 'GET', path: '/a/{id}/{id}' } },
      { name: 'bad.conflict', http: { method: 'GET', path: '/c/{owner}', query: ['owner'] } },
      { name: 'bad.body', http: { method: 'POST', path: '/b', body: ['a..b'] } },
      { name: 'same.shape', http: { method: 'GET', path: '/ok/{other}' } },
      { name: 'ok.get', http: { method: 'GET', path: '/dup' } },
      { name: 'bad.mcp', mcp: { tool: 'x' } },
      { name: 'bad.slash', http: { method: 'GET', path: '/a%2Fb' } },
      { name: 'Bad-Name', http: { method: 'GET', path: '/n' } },
    ],
  });
  const { index, problems } = compileTools(snapshotOf([t]));
  assert.deepEqual(
    problems.map((p) => p.field),
    [
      '.spec.actions[1].http.path',
      '.spec.actions[2].http.path',
      '.spec.actions[3].http.path',
      '.spec.actions[4].http',
      '.spec.actions[5].http.body[0]',
      '.spec.actions[6].http',
      '.spec.actions[7].name',
      '.spec.actions[8].mcp',
      '.spec.actions[9].http.path',
      '.spec.actions[10].name',
    ],
  );
  assert.match(problems.find((p) => p.field === '.spec.actions[6].http')?.message ?? '', /same requests as action ok\.get/);
  assert.deepEqual([...(index.tools.get('ns/t')?.actions.keys() ?? [])], ['ok.get'], 'the tool stays usable with its good actions');
});

test('MCP tool problems: no mcpPath, built-in names, duplicate tool names, http actions', () => {
  const noPath = tool('ns', 'nopath', { protocol: 'MCP', hosts: ['m1.example'], actions: [{ name: 'x.y', mcp: { tool: 'y' } }] });
  const t = tool('ns', 'm', {
    protocol: 'MCP',
    hosts: ['m2.example'],
    mcpPath: '/mcp',
    actions: [
      { name: 'a.call', mcp: { tool: 'call' } },
      { name: 'mcp.ping', mcp: { tool: 'ping' } },
      { name: 'b.call', mcp: { tool: 'call' } },
      { name: 'c.http', http: { method: 'GET', path: '/' } },
    ],
  });
  const { index, problems } = compileTools(snapshotOf([noPath, t]));
  assert.deepEqual(
    problems.map((p) => `${p.object} ${p.field}`),
    ['AgentTool ns/m .spec.actions[1].name', 'AgentTool ns/m .spec.actions[2].mcp.tool', 'AgentTool ns/m .spec.actions[3].http', 'AgentTool ns/nopath .spec.mcpPath'],
  );
  assert.equal(index.tools.has('ns/nopath'), false);
  assert.deepEqual([...(index.tools.get('ns/m')?.mcpTools.keys() ?? [])], ['call']);
});

test('invalid host patterns make the tool unusable', () => {
  const t = tool('ns', 'h', { hosts: ['API.example.com'] });
  const none = tool('ns', 'n', { hosts: [] as unknown as [string] });
  const { index, problems } = compileTools(snapshotOf([t, none]));
  assert.deepEqual(problems.map((p) => `${p.object} ${p.field}`), ['AgentTool ns/h .spec.hosts[0]', 'AgentTool ns/n .spec.hosts']);
  assert.equal(index.tools.size, 0);
});

test('HTTP routes are sorted most specific first, deterministically', () => {
  const { index } = compileTools(snapshotOf([githubTool, paymentsTool], fixtureSecrets));
  const get = index.tools.get('shop/github')?.routes.get('GET')?.map((a) => a.name);
  assert.deepEqual(get, ['github.issue.get', 'github.contents.get', 'github.issues.list', 'github.repo.any']);
  const del = index.tools.get('shop/github')?.routes.get('DELETE')?.map((a) => a.name);
  assert.deepEqual(del, ['github.branch.delete', 'github.ref.delete']);
  const again = compileTools(snapshotOf([githubTool, paymentsTool], fixtureSecrets)).index.tools.get('shop/github')?.routes.get('GET');
  assert.deepEqual(again?.map((a) => a.name), get);
});

test('parseTemplate: literals are decoded, captures and rest recorded', () => {
  const t = parseTemplate('/a%20b/{x}/{rest...}', () => assert.fail('no problem expected'));
  assert.deepEqual(t?.segments, [
    { kind: 'literal', value: 'a b' },
    { kind: 'capture', name: 'x' },
    { kind: 'rest', name: 'rest' },
  ]);
  assert.equal(t?.literals, 1);
  const problems: string[] = [];
  assert.equal(parseTemplate('no-slash', (m) => problems.push(m)), undefined);
  assert.equal(parseTemplate('/a/../b', (m) => problems.push(m)), undefined);
  assert.equal(parseTemplate('/{9bad}', (m) => problems.push(m)), undefined);
  assert.equal(problems.length, 3);
});
