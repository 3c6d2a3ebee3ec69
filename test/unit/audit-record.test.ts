import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Classification } from '../../crds/generated/types.ts';
import type { CheckInput, CheckOutcome, Classified } from '../../controller/src/authz/types.ts';
import { canonicalJson } from '../../controller/src/audit/canonical.ts';
import { chainRecord, GENESIS_HASH } from '../../controller/src/audit/chain.ts';
import { PARAMS_MAX_BYTES, PARAM_VALUE_MAX_BYTES, auditParams, buildAuditRecord, type AuditExecution } from '../../controller/src/audit/record.ts';
import { isMandateError } from '../../controller/src/errors.ts';

const sha = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

function input(over: Partial<CheckInput['request']> = {}): CheckInput {
  return {
    peer: { spiffeId: 'spiffe://cluster.local/ns/team-a/agent/pr-bot', namespace: 'team-a', name: 'pr-bot', serial: '0a1b2c' },
    request: {
      id: 'req-1', method: 'POST', host: 'api.github.com', path: '/repos/acme/web/pulls/7/merge', query: { page: '2' },
      headers: { authorization: 'Bearer live-token', 'x-api-key': 'k-123' }, scheme: 'https', bodyTruncated: false, sourceInstance: 'pod-uid-1',
      ...over,
    },
    now: new Date('2025-03-01T12:00:00.000Z'),
  };
}

function outcome(classified?: Classified, over: Partial<CheckOutcome> = {}): CheckOutcome {
  return {
    decisionId: 'dec-42',
    decision: {
      effect: 'Allow', reason: 'rule', rule: { policy: 'team-a/merge', generation: 4, rule: 'small-prs' }, message: 'allowed by small-prs',
      httpStatus: 200, classified,
      dryRun: [{ policy: 'team-a/strict', effect: 'Deny', reason: 'default-deny' }],
    },
    credential: { secret: 'team-a/github-token', header: 'authorization', value: 'Bearer ghp_supersecret' },
    removeHeaders: ['x-mandate-identity'],
    identity: { version: '1.4.0', owner: 'alice@example.com' },
    bodyDigest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    ...over,
  };
}

function classified(classification: Classification, params: Record<string, unknown>): Classified {
  return { tool: 'team-a/github', action: 'github.pr.merge', classification, reversible: false, params };
}

describe('audit record', () => {
  it('maps the check into the record fields of DESIGN §7', () => {
    const rec = buildAuditRecord(input(), outcome(classified('internal', { owner: 'acme', number: 7 })), { latencyMs: 1.23456789 });
    assert.deepEqual(JSON.parse(canonicalJson(rec)), {
      v: 1,
      kind: 'decision',
      time: '2025-03-01T12:00:00.000Z',
      decisionId: 'dec-42',
      tenant: 'team-a',
      identity: {
        spiffeId: 'spiffe://cluster.local/ns/team-a/agent/pr-bot', namespace: 'team-a', name: 'pr-bot', version: '1.4.0', owner: 'alice@example.com',
        serial: '0a1b2c', instance: 'pod-uid-1',
      },
      request: {
        method: 'POST', host: 'api.github.com', path: '/repos/acme/web/pulls/7/merge', tool: 'team-a/github', action: 'github.pr.merge',
        classification: 'internal', params: { owner: 'acme', number: 7 },
        bodyDigest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      },
      decision: {
        effect: 'Allow', reason: 'rule', httpStatus: 200, rule: { policy: 'team-a/merge', generation: 4, rule: 'small-prs' }, mode: 'Enforce',
        dryRun: [{ policy: 'team-a/strict', effect: 'Deny', reason: 'default-deny' }],
      },
      credential: { secret: 'team-a/github-token' },
      latencyMs: 1.235,
    });
  });

  it('records an unclassified deny without tool, params or credential', () => {
    const rec = buildAuditRecord(
      input({ bodyTruncated: true }),
      outcome(undefined, { credential: undefined, decision: { effect: 'Deny', reason: 'unknown-destination', message: 'no tool', httpStatus: 403, dryRun: [] } }),
      { latencyMs: 0, mode: 'DryRun' },
    );
    const stored = JSON.parse(canonicalJson(rec)) as Record<string, Record<string, unknown>>;
    assert.equal(stored.request!.path, '/repos/acme/web/pulls/7/merge');
    assert.equal(stored.request!.bodyTruncated, true);
    assert.equal('params' in stored.request!, false);
    assert.equal('credential' in stored, false);
    assert.deepEqual(stored.decision, { effect: 'Deny', reason: 'unknown-destination', httpStatus: 403, mode: 'DryRun', dryRun: [] });
  });

  for (const classification of ['confidential', 'restricted'] as const) {
    it(`replaces ${classification} parameter values and the path by digests of their canonical JSON`, () => {
      const params = { account: 'DE89 3704 0044 0532 0130 00', amount: 1250.5, meta: { b: [1, 2], a: 'x' } };
      const rec = buildAuditRecord(input({ path: '/accounts/DE89370400440532013000/transfer' }), outcome(classified(classification, params)), { latencyMs: 2 });
      assert.deepEqual(rec.request.params, {
        account: { sha256: sha('"DE89 3704 0044 0532 0130 00"') },
        amount: { sha256: sha('1250.5') },
        meta: { sha256: sha('{"a":"x","b":[1,2]}') },
      });
      assert.deepEqual(rec.request.path, { sha256: sha('"/accounts/DE89370400440532013000/transfer"') });
      const line = chainRecord(1, GENESIS_HASH, rec).line;
      for (const secret of ['DE89', '1250.5', '"x"', 'accounts/DE']) assert.equal(line.includes(secret), false, secret);
    });
  }

  it('keeps public and internal parameter values', () => {
    for (const classification of ['public', 'internal'] as const) {
      assert.deepEqual(auditParams({ q: 'kubernetes', n: 3, nested: { ok: true } }, classification), { q: 'kubernetes', n: 3, nested: { ok: true } });
    }
  });

  it('caps the size of kept parameters', () => {
    const big = 'x'.repeat(PARAM_VALUE_MAX_BYTES + 10);
    const capped = auditParams({ small: 'ok', big }, 'internal') as Record<string, unknown>;
    assert.equal(capped.small, 'ok');
    assert.deepEqual(capped.big, { sha256: sha(JSON.stringify(big)), bytes: big.length + 2, truncated: true });

    const many: Record<string, string> = {};
    for (let i = 0; i < 40; i++) many[`field${i}`] = 'y'.repeat(PARAM_VALUE_MAX_BYTES - 10);
    const whole = auditParams(many, 'public') as Record<string, unknown>;
    assert.equal(whole.truncated, true);
    assert.ok((whole.bytes as number) > PARAMS_MAX_BYTES);
    assert.match(whole.sha256 as string, /^[0-9a-f]{64}$/);
  });

  it('turns hostile parameter values into data the log can always write', () => {
    const hostile = JSON.parse('{"lone":"a\\ud800b","huge":1e400,"__proto__":{"polluted":true},"deep":' + '['.repeat(40) + ']'.repeat(40) + '}') as Record<string, unknown>;
    hostile.big = 12345678901234567890n;
    hostile.when = new Date('2025-01-01T00:00:00Z');
    hostile.fn = () => 1;
    const rec = buildAuditRecord(input({ path: '/p\udfff' }), outcome(classified('public', hostile)), { latencyMs: 1 });
    const params = rec.request.params as Record<string, unknown>;
    assert.equal(params.lone, 'a\ufffdb');
    assert.equal(params.huge, 'Infinity');
    assert.equal(params.big, '12345678901234567890');
    assert.equal(params.when, '2025-01-01T00:00:00.000Z');
    assert.equal('fn' in params, false);
    assert.deepEqual(Object.getOwnPropertyDescriptor(params, '__proto__')?.value, { polluted: true });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.match(JSON.stringify(params.deep), /"\[too deep\]"/);
    assert.equal(rec.request.path, '/p\ufffd');
    assert.doesNotThrow(() => chainRecord(1, GENESIS_HASH, rec));
  });

  it('refuses a latency that is not a finite non-negative number', () => {
    for (const latencyMs of [NaN, -1, Infinity]) {
      assert.throws(() => buildAuditRecord(input(), outcome(), { latencyMs }), (err: unknown) => isMandateError(err, 'INTERNAL'));
    }
  });

  it('never records header values, query values, credential values or tokens (property test)', () => {
    let state = 0x9e3779b9;
    const rand = (): number => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 0x100000000;
    };
    const token = (prefix: string): string => prefix + Math.floor(rand() * 2 ** 52).toString(36) + Math.floor(rand() * 2 ** 52).toString(36);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const headerNames = ['authorization', 'cookie', 'x-api-key', 'x-mandate-identity', 'proxy-authorization', 'x-request-id', 'x-custom'];
    const classes: Classification[] = ['public', 'internal', 'confidential', 'restricted'];
    for (let round = 0; round < 300; round++) {
      const secrets: string[] = [];
      const headers: Record<string, string> = {};
      for (const name of headerNames) if (rand() < 0.7) secrets.push((headers[name] = token('hdr')));
      const query: Record<string, string> = { q: token('qry') };
      secrets.push(query.q!);
      const credentialValue = token('cred');
      secrets.push(credentialValue);
      const executionToken = token('jwt');
      secrets.push(executionToken);
      const execution = { user: 'user@example.com', act: ['spiffe://cluster.local/ns/team-a/agent/pr-bot'], task: 't-1', jti: 'jti-1', token: executionToken } as AuditExecution;
      const hasTool = rand() < 0.8;
      const params: Record<string, unknown> = { owner: pick(['acme', 'initech']), n: Math.floor(rand() * 1000) };
      const out = outcome(hasTool ? classified(pick(classes), params) : undefined, {
        credential: rand() < 0.5 ? { secret: 'team-a/github-token', header: pick(headerNames), value: credentialValue } : undefined,
        decision: {
          effect: pick(['Allow', 'Deny', 'RequireApproval'] as const), reason: 'rule', httpStatus: 403, message: `denied ${token('msg')}`,
          classified: hasTool ? classified(pick(classes), params) : undefined, dryRun: [],
        },
      });
      const rec = buildAuditRecord(input({ headers, query, id: token('rid') }), out, { latencyMs: rand() * 10, execution });
      const line = chainRecord(round + 1, GENESIS_HASH, rec).line;
      for (const secret of secrets) assert.equal(line.includes(secret), false, `round ${round} leaked ${secret.slice(0, 3)}…`);
      assert.equal(line.includes('"message"'), false);
      assert.equal(line.includes('"headers"'), false);
      assert.equal(line.includes('"query"'), false);
      assert.match(line, /"execution":\{"act":\["spiffe:[^"]+"\],"jti":"jti-1","task":"t-1","user":"user@example.com"\}/);
    }
  });
});
