// The example manifests in policies/ are what `npm start` serves and what a reader learns the
// product from, so they must load without a single problem and must mean what their comments
// say. The second half runs real requests through the check pipeline against them.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { runCheck, type CheckContext } from '../../controller/src/authz/check.ts';
import { compileSnapshot, type Compiled } from '../../controller/src/authz/compiled.ts';
import type { CheckRequestObject } from '../../controller/src/authz/request.ts';
import type { CheckOutcome } from '../../controller/src/authz/types.ts';
import { silentLogger } from '../../controller/src/log.ts';
import { createLimiterState } from '../../controller/src/policy/limits.ts';
import { FileStore } from '../../controller/src/store/files.ts';
import { formatProblem } from '../../controller/src/store/problems.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';

const dir = resolve(import.meta.dirname, '../../policies');
let snapshot: Snapshot;
let compiled: Compiled;

before(async () => {
  const store = new FileStore<Compiled>({ dir, watch: false, log: silentLogger, compile: (s) => compileSnapshot(s, 'cluster.local') });
  const result = await store.load();
  assert.deepEqual(result.problems.map(formatProblem), [], 'policies/ loads without problems');
  const current = store.current();
  assert.ok(current);
  ({ snapshot, compiled } = current);
});

describe('the example folder', () => {
  test('loads with zero problems and no compiler warnings', () => {
    assert.equal(snapshot.revision, 1);
    assert.deepEqual(compiled.warnings.map(formatProblem), []);
  });

  test('holds the agents, tools and Secrets the README describes, all in namespace agents', () => {
    assert.deepEqual([...snapshot.identities.keys()].sort(), ['agents/github-agent', 'agents/legacy-crawler', 'agents/research-agent', 'agents/support-agent']);
    assert.deepEqual([...snapshot.tools.keys()].sort(), ['agents/github', 'agents/helpdesk', 'agents/payments', 'agents/research-mcp']);
    assert.deepEqual([...snapshot.secrets.keys()].sort(), ['agents/github-token', 'agents/helpdesk-token', 'agents/payments-api-key']);
    assert.deepEqual([...snapshot.policies.keys()].sort(), ['agents/github-agent', 'agents/research-agent', 'agents/research-fetch-allowlist', 'agents/support-agent']);
  });

  test('shows each feature at least once: suspension, DryRun, schedule, rate limit, budget, selector, MCP', () => {
    const rules = [...snapshot.policies.values()].flatMap((p) => p.spec.rules);
    assert.deepEqual([...snapshot.identities.values()].filter((i) => i.spec.suspended).map((i) => i.metadata.name), ['legacy-crawler']);
    assert.ok([...snapshot.policies.values()].some((p) => p.spec.mode === 'DryRun' && p.spec.targets.selector));
    assert.ok(rules.some((r) => r.schedule));
    assert.ok(rules.some((r) => r.rateLimit));
    assert.ok(rules.some((r) => r.budget));
    assert.equal(snapshot.tools.get('agents/research-mcp')?.spec.protocol, 'MCP');
  });

  test('example credentials are obvious fakes', () => {
    for (const secret of snapshot.secrets.values()) {
      for (const value of secret.values.values()) assert.match(value, /EXAMPLE/, `${secret.metadata.name} holds a placeholder`);
    }
  });
});

describe('the examples decide as documented', () => {
  // Wednesday 2030-01-09 10:00 in Berlin; Sunday for the out-of-schedule case.
  const weekday = new Date('2030-01-09T09:00:00Z');
  const sunday = new Date('2030-01-13T09:00:00Z');
  let ids = 0;
  const context = (): CheckContext => ({
    policies: compiled.policies,
    tools: compiled.tools,
    limiter: createLimiterState(),
    killSwitch: { global: false, namespaces: [] },
    maxBodyBytes: 1024 * 1024,
    newId: () => `decision-${++ids}`,
  });

  function call(agent: string, method: string, host: string, path: string, body?: unknown, now = weekday, scheme = 'https'): CheckOutcome {
    const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
    const raw: CheckRequestObject = {
      attributes: {
        request: {
          http: { id: `req-${++ids}`, method, host, path, scheme, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) },
        },
      },
    };
    const peer = { spiffeId: `spiffe://cluster.local/ns/agents/agent/${agent}`, namespace: 'agents', name: agent, serial: '01' };
    return runCheck(peer, raw, now, context()).outcome;
  }
  const mcp = (agent: string, method: string, params?: unknown, now = weekday): CheckOutcome =>
    call(agent, 'POST', 'mcp.research.internal:8080', '/mcp', { jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) }, now, 'http');
  const effect = (o: CheckOutcome): string => `${o.decision.effect}${o.decision.rule ? ` ${o.decision.rule.rule}` : ` (${o.decision.reason})`}`;

  test('github-agent: issues allowed with the token injected, branch deletion denied, merges need approval', () => {
    const list = call('github-agent', 'GET', 'api.github.com', '/repos/acme/web/issues?state=open');
    assert.equal(effect(list), 'Allow issues');
    assert.equal(list.credential?.header, 'authorization');
    assert.equal(list.credential?.value, 'Bearer EXAMPLE-ONLY-not-a-real-github-token');
    assert.equal(list.credential?.secret, 'agents/github-token');
    assert.equal(effect(call('github-agent', 'POST', 'api.github.com', '/repos/acme/web/issues/7/comments', { body: 'hi' })), 'Allow issues');
    assert.equal(effect(call('github-agent', 'DELETE', 'api.github.com', '/repos/acme/web/git/refs/heads/feature/x')), 'Deny never-delete-branches');
    assert.equal(effect(call('github-agent', 'POST', 'api.github.com', '/repos/acme/web/merges', { base: 'main', head: 'feature/x' })), 'RequireApproval merges-into-main');
    assert.equal(effect(call('github-agent', 'POST', 'api.github.com', '/repos/acme/web/merges', { base: 'release', head: 'feature/x' })), 'Allow other-branch-merges');
    assert.equal(effect(call('github-agent', 'PUT', 'api.github.com', '/repos/acme/web/pulls/12/merge', { merge_method: 'squash' })), 'RequireApproval pull-request-merges');
    assert.equal(call('github-agent', 'DELETE', 'api.github.com', '/repos/acme/web/git/refs/heads/x').credential, undefined, 'no credential on deny');
  });

  test('support-agent: tickets read-only, refunds up to 1000 allowed, larger ones need approval', () => {
    assert.equal(effect(call('support-agent', 'GET', 'helpdesk.example.com', '/api/v2/tickets?status=open')), 'Allow read-tickets');
    assert.equal(effect(call('support-agent', 'GET', 'helpdesk.example.com', '/api/v2/tickets/42')), 'Allow read-tickets');
    assert.equal(effect(call('support-agent', 'PATCH', 'helpdesk.example.com', '/api/v2/tickets/42', { status: 'closed' })), 'Deny tickets-read-only');
    assert.equal(effect(call('support-agent', 'DELETE', 'helpdesk.example.com', '/api/v2/tickets/42')), 'Deny tickets-read-only');
    const small = call('support-agent', 'POST', 'payments.internal.example.com', '/v1/refunds', { charge: 'ch_1', amount: 1000, reason: 'late' });
    assert.equal(effect(small), 'Allow small-refunds');
    assert.equal(small.credential?.header, 'x-api-key');
    assert.equal(small.credential?.value, 'EXAMPLE-payments-api-key-not-real');
    assert.equal(effect(call('support-agent', 'POST', 'payments.internal.example.com', '/v1/refunds', { charge: 'ch_1', amount: 1000.5 })), 'RequireApproval large-refunds');
    assert.equal(effect(call('support-agent', 'POST', 'payments.internal.example.com', '/v1/refunds', { charge: 'ch_1' })), 'RequireApproval large-refunds');
  });

  test('research-agent: MCP protocol and search allowed, e-mail denied, fetch only on schedule, DryRun recorded', () => {
    assert.equal(effect(mcp('research-agent', 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'a', version: '1' } })), 'Allow mcp-protocol');
    assert.equal(effect(mcp('research-agent', 'tools/list')), 'Allow mcp-protocol');
    const search = mcp('research-agent', 'tools/call', { name: 'web_search', arguments: { query: 'spiffe' } });
    assert.equal(effect(search), 'Allow search');
    assert.deepEqual(search.decision.dryRun, [], 'the DryRun policy speaks only for the actions its rules name');
    assert.equal(effect(mcp('research-agent', 'tools/call', { name: 'send_email', arguments: { to: 'x@example.com', subject: 's' } })), 'Deny no-email');

    const fetchArxiv = mcp('research-agent', 'tools/call', { name: 'fetch_url', arguments: { url: 'https://arxiv.org/abs/1' } });
    assert.equal(effect(fetchArxiv), 'Allow fetch-pages-in-office-hours');
    assert.deepEqual(fetchArxiv.decision.dryRun.map((d) => d.effect), ['Allow']);
    const fetchOther = mcp('research-agent', 'tools/call', { name: 'fetch_url', arguments: { url: 'https://example.org/' } });
    assert.equal(effect(fetchOther), 'Allow fetch-pages-in-office-hours', 'the DryRun policy does not enforce');
    assert.deepEqual(
      fetchOther.decision.dryRun.map((d) => [d.policy, d.effect, d.reason]),
      [['agents/research-fetch-allowlist', 'Deny', 'default-deny']],
    );
    assert.equal(effect(mcp('research-agent', 'tools/call', { name: 'fetch_url', arguments: { url: 'https://arxiv.org/abs/1' } }, sunday)), 'Deny (default-deny)');
    assert.equal(effect(mcp('research-agent', 'tools/call', { name: 'fetch_url', arguments: { url: 'http://arxiv.org/abs/1' } })), 'Deny (default-deny)');
  });

  test('legacy-crawler is suspended: everything is denied before any policy', () => {
    const o = mcp('legacy-crawler', 'tools/call', { name: 'web_search', arguments: { query: 'x' } });
    assert.equal(o.decision.effect, 'Deny');
    assert.equal(o.decision.reason, 'suspended');
  });
});
