import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MethodDefinition } from '@grpc/proto-loader';
import { authProtoTypes, authorizationService, decodeToObject, encodeStrict } from '../../controller/src/authz/protos.ts';
import { toCheckResponse, type CheckResponseObject, type DenyBody } from '../../controller/src/authz/response.ts';
import type { CheckOutcome, Decision, HttpRequestAttributes } from '../../controller/src/authz/types.ts';

const SECRET = 'Bearer ghp_responseTestSecret';
const request: HttpRequestAttributes = {
  id: 'r-1',
  method: 'POST',
  host: 'api.github.com',
  path: '/repos/a/b/issues',
  query: {},
  headers: {
    'content-type': 'application/json',
    'x-mandate-identity': 'spiffe://cluster.local/ns/kube-system/agent/admin',
    'x-mandate-decision-id': 'forged',
    'x-private-note': 'do-not-echo-me',
  },
  scheme: 'https',
  bodyTruncated: false,
};
const classified = { tool: 'shop/github', action: 'github.issue.create', classification: 'internal' as const, reversible: true, params: { title: 'T' } };

function outcome(decision: Partial<Decision> & Pick<Decision, 'effect' | 'reason'>, extra: Partial<CheckOutcome> = {}): CheckOutcome {
  return {
    decisionId: 'dec-123',
    decision: { message: 'explained', httpStatus: decision.effect === 'Allow' ? 200 : 403, dryRun: [], ...decision },
    removeHeaders: [],
    ...extra,
  };
}

/** Encodes strictly, checks the gRPC server's own serializer agrees, and decodes back. */
function wire(resp: CheckResponseObject): Record<string, unknown> {
  const { CheckResponse } = authProtoTypes();
  const bytes = encodeStrict(CheckResponse, resp, 'object');
  const check = authorizationService().Check as MethodDefinition<object, object>;
  assert.deepEqual(check.responseSerialize(resp as unknown as object), Buffer.from(bytes));
  return decodeToObject(CheckResponse, bytes);
}
const denyBody = (resp: CheckResponseObject): DenyBody => JSON.parse(resp.denied_response?.body ?? 'null') as DenyBody;

test('Allow: OK status, decision id and credential headers overwrite, spoofable headers removed', () => {
  const resp = toCheckResponse(
    outcome(
      { effect: 'Allow', reason: 'rule', rule: { policy: 'shop/p', generation: 3, rule: 'issues' }, classified },
      { credential: { secret: 'shop/github-token', header: 'Authorization', value: SECRET }, removeHeaders: ['X-Mandate-Identity', 'authorization', ':authority', 'host', 'x-forwarded-client-cert'] },
    ),
    request,
  );
  assert.equal(resp.status.code, 0);
  assert.equal(resp.denied_response, undefined);
  assert.deepEqual(resp.ok_response?.headers, [
    { header: { key: 'x-mandate-decision-id', value: 'dec-123' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'authorization', value: SECRET }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
  ]);
  // Envoy removes after it adds: the headers we set must not be on the removal list.
  assert.deepEqual(resp.ok_response?.headers_to_remove, ['x-forwarded-client-cert', 'x-mandate-identity']);
  const decoded = wire(resp);
  assert.equal(decoded.http_response, 'ok_response');
  const ok = decoded.ok_response as { headers: { header: { key: string; value: string }; append_action: string }[]; headers_to_remove: string[] };
  assert.equal(ok.headers[1]?.append_action, 'OVERWRITE_IF_EXISTS_OR_ADD');
  assert.equal(ok.headers[1]?.header.value, SECRET);
  assert.equal('append' in (ok.headers[1] ?? {}), false, 'the deprecated append field is not used');
});

test('Allow without a credential and without a request still strips x-mandate-* listed by the glue', () => {
  const resp = toCheckResponse(outcome({ effect: 'Allow', reason: 'rule' }, { removeHeaders: ['x-mandate-elevation'] }));
  assert.deepEqual(resp.ok_response?.headers.map((h) => h.header.key), ['x-mandate-decision-id']);
  assert.deepEqual(resp.ok_response?.headers_to_remove, ['x-mandate-elevation']);
  wire(resp);
});

test('Deny by rule: 403 with a JSON body naming the rule and how to ask for elevation', () => {
  const resp = toCheckResponse(
    outcome({ effect: 'Deny', reason: 'rule', message: 'branch deletion is not allowed', rule: { policy: 'shop/git', generation: 2, rule: 'no-deletes' }, classified }),
    request,
  );
  assert.equal(resp.status.code, 7);
  assert.equal(resp.ok_response, undefined);
  assert.equal(resp.denied_response?.status.code, 403);
  assert.deepEqual(
    resp.denied_response?.headers.map((h) => [h.header.key, h.header.value, h.append_action]),
    [
      ['content-type', 'application/json', 'OVERWRITE_IF_EXISTS_OR_ADD'],
      ['cache-control', 'no-store', 'OVERWRITE_IF_EXISTS_OR_ADD'],
      ['x-mandate-decision-id', 'dec-123', 'OVERWRITE_IF_EXISTS_OR_ADD'],
    ],
  );
  const body = denyBody(resp);
  assert.deepEqual(
    { ...body, elevation: undefined },
    { decision: 'Deny', reason: 'rule', rule: { policy: 'shop/git', rule: 'no-deletes' }, message: 'branch deletion is not allowed', decisionId: 'dec-123', action: 'github.issue.create', elevation: undefined },
  );
  assert.equal(body.elevation.available, true);
  assert.equal(body.elevation.required, false);
  assert.match(body.elevation.how, /kubectl mandate elevate --decision dec-123/);
  const decoded = wire(resp);
  assert.deepEqual((decoded.denied_response as { status: unknown }).status, { code: 'Forbidden' });
  assert.equal((decoded.status as { code: number }).code, 7);
});

test('RequireApproval says approval is required', () => {
  const resp = toCheckResponse(outcome({ effect: 'RequireApproval', reason: 'rule', rule: { policy: 'shop/pay', generation: 1, rule: 'big-refunds' }, classified }), request);
  assert.equal(resp.status.code, 7);
  const body = denyBody(resp);
  assert.equal(body.decision, 'RequireApproval');
  assert.equal(body.elevation.required, true);
  assert.match(body.elevation.how, /^approval is required/);
  wire(resp);
});

test('malformed and too-large answer INVALID_ARGUMENT with 400 / 413; other statuses map or fall back to 403', () => {
  const cases: [Decision['reason'], number, number, number][] = [
    ['malformed', 400, 3, 400],
    ['too-large', 413, 3, 413],
    ['rate-limited', 429, 7, 429],
    ['default-deny', 403, 7, 403],
    ['unknown-destination', 403, 7, 403],
    ['suspended', 418, 7, 403],
  ];
  for (const [reason, httpStatus, grpc, http] of cases) {
    const resp = toCheckResponse(outcome({ effect: 'Deny', reason, httpStatus }));
    assert.equal(resp.status.code, grpc, reason);
    assert.equal(resp.denied_response?.status.code, http, reason);
    const body = denyBody(resp);
    assert.equal(body.reason, reason);
    assert.equal(body.rule, null);
    assert.equal('action' in body, false);
    assert.equal(body.elevation.available, reason === 'default-deny', reason);
    wire(resp);
  }
});

test('every HTTP status a deny can carry is a defined envoy.type.v3.HttpStatus code', () => {
  const names: Record<number, string> = {
    400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 409: 'Conflict',
    413: 'PayloadTooLarge', 422: 'UnprocessableEntity', 429: 'TooManyRequests', 500: 'InternalServerError', 503: 'ServiceUnavailable',
  };
  for (const [code, name] of Object.entries(names)) {
    const decoded = wire(toCheckResponse(outcome({ effect: 'Deny', reason: 'default-deny', httpStatus: Number(code) })));
    assert.deepEqual((decoded.denied_response as { status: unknown }).status, { code: name });
  }
});

test('dynamic metadata carries decision id, effect, reason, action and rule', () => {
  const resp = toCheckResponse(outcome({ effect: 'Deny', reason: 'rule', rule: { policy: 'shop/git', generation: 2, rule: 'no-deletes' }, classified }));
  assert.deepEqual(resp.dynamic_metadata, {
    fields: {
      decision_id: { stringValue: 'dec-123' },
      effect: { stringValue: 'Deny' },
      reason: { stringValue: 'rule' },
      action: { stringValue: 'github.issue.create' },
      tool: { stringValue: 'shop/github' },
      rule: { stringValue: 'shop/git#no-deletes' },
    },
  });
  const decoded = wire(resp) as { dynamic_metadata: { fields: Record<string, { stringValue: string }> } };
  assert.equal(decoded.dynamic_metadata.fields.decision_id?.stringValue, 'dec-123');
});

test('nothing from the request and no credential is echoed in a deny', () => {
  const resp = toCheckResponse(
    outcome({ effect: 'Deny', reason: 'default-deny', classified }, { credential: { secret: 'shop/github-token', header: 'authorization', value: SECRET } }),
    request,
  );
  const bytes = Buffer.from(encodeStrict(authProtoTypes().CheckResponse, resp, 'object')).toString('latin1');
  for (const forbidden of [SECRET, 'do-not-echo-me', 'forged', 'kube-system', 'shop/github-token']) {
    assert.equal(bytes.includes(forbidden), false, forbidden);
  }
});

test('a response with an unknown field does not encode', () => {
  const resp = toCheckResponse(outcome({ effect: 'Allow', reason: 'rule' }));
  const { CheckResponse } = authProtoTypes();
  assert.throws(() => encodeStrict(CheckResponse, { ...resp, extra: true }, 'object'), /extra: unknown field/);
  assert.throws(() => encodeStrict(CheckResponse, { ...resp, ok_response: { ...resp.ok_response, headers_to_add: [] } }, 'object'), /unknown field/);
});
