import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMandateError } from '../../controller/src/errors.ts';
import {
  agentSpiffeId,
  formatSpiffeId,
  parseAgentSpiffeId,
  parseSpiffeId,
  serverSpiffeId,
  trustDomainProblem,
  trustDomainSpiffeId,
  tryParseAgentSpiffeId,
  tryParseSpiffeId,
} from '../../controller/src/identity/spiffe.ts';

void test('agentSpiffeId builds spiffe://<td>/ns/<ns>/agent/<name>', () => {
  assert.equal(agentSpiffeId('cluster.local', 'payments', 'refund-bot'), 'spiffe://cluster.local/ns/payments/agent/refund-bot');
  assert.equal(agentSpiffeId('prod_1.example-org', 'a', 'b.c'), 'spiffe://prod_1.example-org/ns/a/agent/b.c');
});

void test('agentSpiffeId refuses names Kubernetes would not allow', () => {
  for (const [td, ns, name] of [
    ['Cluster.local', 'a', 'b'],
    ['cluster.local', 'A', 'b'],
    ['cluster.local', 'a', 'B'],
    ['cluster.local', 'a/b', 'c'],
    ['cluster.local', 'a', '..'],
    ['cluster.local', '', 'b'],
    ['cluster.local', 'a', ''],
    ['cluster.local', 'x'.repeat(64), 'b'],
  ] as const) {
    assert.throws(() => agentSpiffeId(td, ns, name), (e) => isMandateError(e, 'CERT_REQUEST_INVALID'), `${td} ${ns} ${name}`);
  }
});

void test('serverSpiffeId defaults to the mandate namespace and service account', () => {
  assert.equal(serverSpiffeId('cluster.local'), 'spiffe://cluster.local/ns/mandate/sa/mandate');
  assert.equal(serverSpiffeId('td', 'mandate-system', 'mandate-authz'), 'spiffe://td/ns/mandate-system/sa/mandate-authz');
  assert.equal(trustDomainSpiffeId('td'), 'spiffe://td');
});

void test('parseSpiffeId accepts valid IDs and splits the path', () => {
  assert.deepEqual(parseSpiffeId('spiffe://example.org/ns/default/agent/bot'), {
    trustDomain: 'example.org',
    segments: ['ns', 'default', 'agent', 'bot'],
  });
  assert.deepEqual(parseSpiffeId('spiffe://example.org'), { trustDomain: 'example.org', segments: [] });
  assert.deepEqual(parseSpiffeId('spiffe://a_b-c.d/Path.With-Mixed_Case/9'), { trustDomain: 'a_b-c.d', segments: ['Path.With-Mixed_Case', '9'] });
  const id = 'spiffe://td/x/y';
  assert.equal(formatSpiffeId(parseSpiffeId(id)), id);
});

void test('parseSpiffeId rejects what the SPIFFE ID standard forbids, with a reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['SPIFFE://example.org/a', /lower-case/],
    ['https://example.org/a', /scheme/],
    ['spiffe:/example.org/a', /scheme/],
    ['spiffe://', /trust domain is empty/],
    ['spiffe:///a', /trust domain is empty/],
    ['spiffe://Example.org/a', /trust domain may contain only/],
    ['spiffe://example.org:8443/a', /port/],
    ['spiffe://user@example.org/a', /userinfo/],
    ['spiffe://example.org/a?x=1', /query/],
    ['spiffe://example.org/a#frag', /fragment/],
    ['spiffe://example.org/', /empty segment/],
    ['spiffe://example.org/a//b', /empty segment/],
    ['spiffe://example.org/a/', /empty segment/],
    ['spiffe://example.org/./a', /"\." and "\.\."/],
    ['spiffe://example.org/a/..', /"\." and "\.\."/],
    ['spiffe://example.org/a%20b', /path segments may contain only/],
    ['spiffe://example.org/a b', /path segments may contain only/],
    ['spiffe://exa mple.org/a', /trust domain may contain only/],
    [`spiffe://${'a'.repeat(256)}/x`, /longer than 255/],
    [`spiffe://td/${'a'.repeat(2048)}`, /longer than 2048/],
  ];
  for (const [uri, reason] of cases) {
    const r = tryParseSpiffeId(uri);
    assert.equal(r.ok, false, uri);
    if (!r.ok) assert.match(r.problem, reason, uri);
    assert.throws(() => parseSpiffeId(uri), (e) => isMandateError(e, 'CERT_REQUEST_INVALID'), uri);
  }
});

void test('the length limits are inclusive', () => {
  const td = 'a'.repeat(255);
  assert.equal(trustDomainProblem(td), undefined);
  const prefix = 'spiffe://td/';
  assert.equal(tryParseSpiffeId(prefix + 'a'.repeat(2048 - prefix.length)).ok, true);
});

void test('parseAgentSpiffeId reads only /ns/<ns>/agent/<name> in the given trust domain', () => {
  assert.deepEqual(parseAgentSpiffeId('spiffe://cluster.local/ns/payments/agent/refund-bot', 'cluster.local'), {
    namespace: 'payments',
    name: 'refund-bot',
  });
  const refused: Array<[string, RegExp]> = [
    ['spiffe://other.local/ns/payments/agent/bot', /trust domain "other.local", expected "cluster.local"/],
    ['spiffe://cluster.local/ns/mandate/sa/mandate', /Mandate server, not an agent/],
    ['spiffe://cluster.local/ns/payments/agent/bot/extra', /not of the form/],
    ['spiffe://cluster.local/ns/payments/agent', /not of the form/],
    ['spiffe://cluster.local/ns/payments/pod/bot', /not of the form/],
    ['spiffe://cluster.local/payments/agent/bot/x', /not of the form/],
    ['spiffe://cluster.local', /no path/],
    ['spiffe://cluster.local/ns/Payments/agent/bot', /namespace "Payments"/],
    ['spiffe://cluster.local/ns/payments/agent/Bot_1', /AgentIdentity name "Bot_1"/],
    ['spiffe://cluster.local/ns/payments/agent/bot?x', /query/],
  ];
  for (const [uri, reason] of refused) {
    const r = tryParseAgentSpiffeId(uri, 'cluster.local');
    assert.equal(r.ok, false, uri);
    if (!r.ok) assert.match(r.problem, reason, uri);
    assert.throws(() => parseAgentSpiffeId(uri, 'cluster.local'), (e) => isMandateError(e, 'CERT_REQUEST_INVALID'), uri);
  }
});
