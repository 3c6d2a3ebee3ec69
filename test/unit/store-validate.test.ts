// Validation as the kube-apiserver does it: CRD schemas (closed objects, formats, defaults),
// ObjectMeta syntax, list-type markers and every x-kubernetes-validations rule in crds/.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { defaultCrdDir, loadCrds } from '../../controller/src/store/crds.ts';
import { formatPath } from '../../controller/src/store/field-path.ts';
import { loadValidator, ManifestValidator, type ValidationResult } from '../../controller/src/store/validate.ts';
import { isMandateError } from '../../controller/src/errors.ts';

const API = 'mandate.dev/v1alpha1';
type Obj = Record<string, unknown>;

const identity = (spec: Obj = {}, name = 'agent-a'): Obj => ({
  apiVersion: API,
  kind: 'AgentIdentity',
  metadata: { name, namespace: 'agents' },
  spec: { owner: 'team@example.com', serviceAccount: 'agent-a', ...spec },
});
const policy = (spec: Obj = {}): Obj => ({
  apiVersion: API,
  kind: 'AgentPolicy',
  metadata: { name: 'p', namespace: 'agents' },
  spec: { targets: { identities: ['agent-a'] }, rules: [{ name: 'r', effect: 'Allow', actions: ['a.b'] }], ...spec },
});
const httpAction = { name: 'api.get', http: { method: 'GET', path: '/x' } };
const mcpAction = { name: 'api.search', mcp: { tool: 'search' } };
const tool = (spec: Obj = {}): Obj => ({
  apiVersion: API,
  kind: 'AgentTool',
  metadata: { name: 't', namespace: 'agents' },
  spec: { hosts: ['api.example.com'], actions: [httpAction], ...spec },
});
const rule = (extra: Obj): Obj => ({ name: 'r', effect: 'Allow', actions: ['a.b'], ...extra });

let validator: ManifestValidator;
before(async () => {
  validator = await loadValidator();
});

const check = (obj: Obj): ValidationResult => validator.validate(obj.apiVersion as string, obj.kind as string, obj);
const issues = (obj: Obj): string[] => check(obj).issues.map((i) => `${formatPath(i.path)}: ${i.message}`);

function assertIssue(obj: Obj, field: string, message: RegExp): void {
  const found = check(obj).issues.filter((i) => formatPath(i.path) === field);
  assert.ok(
    found.some((i) => message.test(i.message)),
    `expected a problem at ${JSON.stringify(field)} matching ${message}; got ${JSON.stringify(issues(obj))}`,
  );
}

describe('schema', () => {
  test('valid objects of every kind pass', () => {
    for (const obj of [identity(), policy(), tool(), { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, stringData: { k: 'v' } }]) {
      assert.deepEqual(issues(obj), [], `${String(obj.kind)} is valid`);
    }
  });

  test('schema errors name the field: required, enum, pattern, type, minItems, format', () => {
    assertIssue(identity({ owner: undefined }), '.spec.owner', /required field is missing/);
    assertIssue(policy({ rules: [{ name: 'r', effect: 'Maybe', actions: ['a'] }] }), '.spec.rules[0].effect', /unsupported value "Maybe": supported values: "Allow", "Deny", "RequireApproval"/);
    assertIssue(policy({ rules: [{ name: 'r', effect: 'Allow', actions: ['Bad Glob'] }] }), '.spec.rules[0].actions[0]', /must match/);
    assertIssue(identity({ suspended: 'yes' }), '.spec.suspended', /must be of type boolean, not string/);
    assertIssue(policy({ rules: [] }), '.spec.rules', /fewer than 1 items/);
    assertIssue(identity({ expiresAt: '2030-02-30T00:00:00Z' }), '.spec.expiresAt', /must be a valid date-time/);
    assert.deepEqual(issues(identity({ expiresAt: '2030-02-28T10:00:00.5+01:00' })), []);
    assertIssue(tool({ port: 70000 }), '.spec.port', /must be <= 65535/);
  });

  test('unknown fields are problems at every depth, as with fieldValidation=Strict', () => {
    assertIssue(identity({ ownr: 'x' }), '.spec.ownr', /unknown field/);
    assertIssue({ ...identity(), extra: 1 }, '.extra', /unknown field/);
    assertIssue(policy({ rules: [rule({ rateLimit: { requests: 1, per: '1m', burst: 3 } })] }), '.spec.rules[0].rateLimit.burst', /unknown field/);
    assertIssue(tool({ actions: [{ ...httpAction, http: { method: 'GET', path: '/', headers: {} } }] }), '.spec.actions[0].http.headers', /unknown field/);
    const meta = identity();
    meta.metadata = { name: 'a', labelz: {} };
    assertIssue(meta, '.metadata.labelz', /unknown field/);
  });

  test('maps stay open to any key but typed', () => {
    assert.deepEqual(issues(identity({ selector: { matchLabels: { 'app.kubernetes.io/name': 'x' } } })), []);
    assertIssue(identity({ selector: { matchLabels: { app: 5 } } }), '.spec.selector.matchLabels.app', /must be of type string/);
  });

  test('defaults are applied to a copy, nested ones included; the input is untouched', () => {
    const input = tool({ credential: { secretRef: { name: 's', key: 'k' } } });
    const { object, issues: found } = check(input);
    assert.deepEqual(found, []);
    const spec = object.spec as Obj;
    assert.equal(spec.protocol, 'HTTP');
    assert.equal(spec.scheme, 'https');
    assert.equal(spec.intercept, true);
    assert.deepEqual(spec.credential, { secretRef: { name: 's', key: 'k' }, header: 'authorization', template: 'Bearer {{secret}}' });
    assert.deepEqual((spec.actions as Obj[])[0], { ...httpAction, classification: 'internal', reversible: true });
    assert.equal((input.spec as Obj).protocol, undefined, 'the input object is not modified');

    const id = check(identity()).object.spec as Obj;
    assert.deepEqual([id.trustLevel, id.dataClassificationCeiling, id.certificateTTL, id.tokenTTL, id.suspended], ['low', 'internal', '1h', '5m', false]);
    const pol = check(policy({ rules: [rule({ rateLimit: { requests: 5, per: '1m' } })] })).object.spec as { mode: string; rules: { rateLimit: Obj }[] };
    assert.equal(pol.mode, 'Enforce');
    assert.equal(pol.rules[0]?.rateLimit.key, 'identity');
  });

  test('explicit values are kept over defaults', () => {
    const spec = check(identity({ trustLevel: 'high', suspended: true })).object.spec as Obj;
    assert.equal(spec.trustLevel, 'high');
    assert.equal(spec.suspended, true);
  });

  test('status is dropped, as on create with the status subresource', () => {
    const { object, issues: found } = check({ ...identity(), status: { spiffeID: 'spiffe://x', bogus: true } });
    assert.deepEqual(found, []);
    assert.equal('status' in object, false);
  });

  test('list-type map keys and set items must be unique', () => {
    assertIssue(policy({ rules: [rule({}), rule({ effect: 'Deny' })] }), '.spec.rules[1]', /duplicate entry with name "r"/);
    assertIssue(tool({ actions: [httpAction, httpAction] }), '.spec.actions[1]', /duplicate entry with name "api.get"/);
    assertIssue(tool({ hosts: ['a.example.com', 'a.example.com'] }), '.spec.hosts[1]', /duplicate value "a.example.com"/);
    assertIssue(policy({ rules: [rule({ schedule: { timeZone: 'UTC', days: ['Mon', 'Mon'] } })] }), '.spec.rules[0].schedule.days[1]', /duplicate value "Mon"/);
  });
});

describe('metadata', () => {
  test('name must be a DNS-1123 subdomain, namespace a DNS-1123 label', () => {
    for (const bad of ['Agent', 'agent_a', '-agent', 'a'.repeat(254), 'agent.']) {
      assertIssue(identity({}, bad), '.metadata.name', /DNS-1123 subdomain/);
    }
    for (const good of ['a', 'agent-a', 'agent.a', '0agent']) assert.deepEqual(issues(identity({}, good)), []);
    const obj = identity();
    obj.metadata = { name: 'a', namespace: 'Agents' };
    assertIssue(obj, '.metadata.namespace', /DNS-1123 label/);
  });

  test('name is required; label keys and values have Kubernetes syntax', () => {
    const unnamed = identity();
    unnamed.metadata = { namespace: 'agents' };
    assertIssue(unnamed, '.metadata.name', /required/);
    const labelled = identity();
    labelled.metadata = { name: 'a', labels: { 'example.com/team': 'ok', 'bad key': 'x', tier: 'not valid!' } };
    assertIssue(labelled, ".metadata.labels['bad key']", /invalid label key/);
    assertIssue(labelled, '.metadata.labels.tier', /invalid label value/);
    assert.equal(check(labelled).issues.length, 2);
  });
});

// Each rule is exercised passing and failing; the coverage test below fails when a CRD gains a
// rule that this table does not exercise.
const celCases: { rule: RegExp; pass: Obj; fail: Obj; field: string; message: RegExp }[] = [
  {
    rule: /self\.spec\.parent != self\.metadata\.name/,
    pass: identity({ parent: 'agent-b' }),
    fail: identity({ parent: 'agent-a' }),
    field: '',
    message: /spec.parent must name another AgentIdentity/,
  },
  {
    rule: /duration\(self\.tokenTTL\) <= duration\(self\.certificateTTL\)/,
    pass: identity({ tokenTTL: '10m', certificateTTL: '10m' }),
    fail: identity({ tokenTTL: '15m', certificateTTL: '10m' }),
    field: '.spec.tokenTTL',
    message: /tokenTTL must not exceed certificateTTL/,
  },
  {
    rule: /duration\('5m'\)/,
    pass: identity({ certificateTTL: '24h', tokenTTL: '1m' }),
    fail: identity({ certificateTTL: '25h' }),
    field: '.spec.certificateTTL',
    message: /certificateTTL must be between 5m and 24h/,
  },
  {
    rule: /duration\('30s'\)/,
    pass: identity({ tokenTTL: '30s' }),
    fail: identity({ tokenTTL: '29s' }),
    field: '.spec.tokenTTL',
    message: /tokenTTL must be between 30s and 15m/,
  },
  {
    rule: /has\(self\.identities\) \|\| has\(self\.selector\)/,
    pass: policy({ targets: { selector: { matchLabels: { team: 'a' } } } }),
    fail: policy({ targets: {} }),
    field: '.spec.targets',
    message: /targets needs identities or a selector/,
  },
  {
    rule: /!has\(self\.rateLimit\)/,
    pass: policy({ rules: [rule({ rateLimit: { requests: 10, per: '1m' } })] }),
    fail: policy({ rules: [rule({ name: 'x', effect: 'Allow' }), rule({ effect: 'Deny', rateLimit: { requests: 10, per: '1m' } })] }),
    field: '.spec.rules[1].rateLimit',
    message: /rateLimit applies to Allow rules only/,
  },
  {
    rule: /!has\(self\.budget\)/,
    pass: policy({ rules: [rule({ budget: { param: 'amount', max: 5000, per: '24h' } })] }),
    fail: policy({ rules: [rule({ effect: 'RequireApproval', budget: { param: 'amount', max: 5000, per: '24h' } })] }),
    field: '.spec.rules[0].budget',
    message: /budget applies to Allow rules only/,
  },
  {
    rule: /!has\(self\.start\) == !has\(self\.end\)/,
    pass: policy({ rules: [rule({ schedule: { timeZone: 'Europe/Berlin', start: '09:00', end: '17:00' } })] }),
    fail: policy({ rules: [rule({ schedule: { timeZone: 'Europe/Berlin', end: '17:00' } })] }),
    field: '.spec.rules[0].schedule',
    message: /start and end go together/,
  },
  {
    rule: /self\.actions\.all\(a, has\(a\.mcp\)\)/,
    pass: tool({ protocol: 'MCP', mcpPath: '/mcp', actions: [mcpAction] }),
    fail: tool({ protocol: 'MCP', mcpPath: '/mcp', actions: [mcpAction, httpAction] }),
    field: '.spec.actions',
    message: /every action of an MCP tool must have an mcp mapping/,
  },
  {
    rule: /self\.actions\.all\(a, has\(a\.http\)\)/,
    pass: tool({ protocol: 'HTTP', actions: [httpAction] }),
    // protocol left out: the default (HTTP) applies before the rule runs.
    fail: tool({ actions: [httpAction, mcpAction] }),
    field: '.spec.actions',
    message: /every action of an HTTP tool must have an http mapping/,
  },
  {
    rule: /has\(self\.mcpPath\)/,
    pass: tool({ protocol: 'MCP', mcpPath: '/mcp', actions: [mcpAction] }),
    fail: tool({ protocol: 'MCP', actions: [mcpAction] }),
    field: '.spec.mcpPath',
    message: /an MCP tool needs mcpPath/,
  },
  {
    rule: /startsWith\('x-mandate-'\)/,
    pass: tool({ credential: { secretRef: { name: 's', key: 'k' }, header: 'x-api-key' } }),
    fail: tool({ credential: { secretRef: { name: 's', key: 'k' }, header: 'x-mandate-token' } }),
    field: '.spec.credential.header',
    message: /the x-mandate- header prefix is reserved/,
  },
  {
    rule: /contains\('\{\{secret\}\}'\)/,
    pass: tool({ credential: { secretRef: { name: 's', key: 'k' }, template: 'token {{secret}}' } }),
    fail: tool({ credential: { secretRef: { name: 's', key: 'k' }, template: 'Bearer {{token}}' } }),
    field: '.spec.credential.template',
    message: /template must contain \{\{secret\}\}/,
  },
  {
    rule: /has\(self\.http\) != has\(self\.mcp\)/,
    pass: tool({ actions: [httpAction] }),
    fail: tool({ actions: [{ ...httpAction, mcp: { tool: 'x' } }] }),
    field: '.spec.actions[0]',
    message: /an action maps either http or mcp, exactly one/,
  },
];

describe('x-kubernetes-validations (CEL)', () => {
  for (const c of celCases) {
    test(`rule ${c.rule.source}: passes and fails`, () => {
      assert.deepEqual(issues(c.pass), [], 'the passing object has no problems');
      assertIssue(c.fail, c.field, c.message);
    });
  }

  test('every rule in crds/*.yaml is exercised by a case above', async () => {
    const crds = await loadCrds();
    const rules: string[] = [];
    const collect = (node: unknown): void => {
      if (node === null || typeof node !== 'object') return;
      const validations = (node as Obj)['x-kubernetes-validations'];
      if (Array.isArray(validations)) for (const v of validations) rules.push((v as { rule: string }).rule);
      for (const child of Object.values(node)) collect(child);
    };
    for (const crd of crds) collect(crd.schema);
    assert.ok(rules.length >= 14, `found ${rules.length} rules`);
    for (const r of rules) {
      assert.equal(celCases.filter((c) => c.rule.test(r)).length, 1, `exactly one test case exercises ${r}`);
    }
  });

  test('rules below absent fields do not run; errors in a field already invalid are not doubled', () => {
    assert.deepEqual(issues(tool()), [], 'no credential: its header and template rules do not run');
    const found = issues(identity({ certificateTTL: 'soon' }));
    assert.deepEqual(found, ['.spec.certificateTTL: invalid value "soon": must match ^([0-9]+(s|m|h))+$']);
  });

  test('fieldPath, message, messageExpression and transition rules are honoured', () => {
    const crd = {
      file: 'test.yaml',
      apiVersion: 'test.dev/v1',
      kind: 'Thing',
      schema: {
        type: 'object',
        properties: {
          spec: {
            type: 'object',
            'x-kubernetes-validations': [
              { rule: 'self.min <= self.max', messageExpression: "'min ' + string(self.min) + ' exceeds max ' + string(self.max)", fieldPath: '.min' },
              { rule: 'self.max < 100' },
              { rule: 'self.max >= oldSelf.max', message: 'max may not shrink' },
              { rule: "self.labels['a.b/c'] == 'x'", fieldPath: ".labels['a.b/c']", message: 'label must be x' },
              { rule: "self.at < timestamp('2030-01-01T00:00:00Z')", message: 'at is a timestamp' },
            ],
            properties: {
              min: { type: 'integer' },
              max: { type: 'integer', format: 'int32' },
              labels: { type: 'object', additionalProperties: { type: 'string' } },
              at: { type: 'string', format: 'date-time' },
            },
          },
        },
      },
    };
    const v = new ManifestValidator([crd]);
    const thing = (spec: Obj): Obj => ({ apiVersion: 'test.dev/v1', kind: 'Thing', metadata: { name: 't' }, spec });
    const run = (spec: Obj): string[] => v.validate('test.dev/v1', 'Thing', thing(spec)).issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
    assert.deepEqual(run({ min: 1, max: 2, labels: { 'a.b/c': 'x' }, at: '2029-12-31T23:59:59Z' }), []);
    assert.deepEqual(run({ min: 200, max: 150, labels: { 'a.b/c': 'y' }, at: '2031-01-01T00:00:00Z' }), [
      '.spec.min: min 200 exceeds max 150',
      '.spec: failed rule: self.max < 100',
      ".spec.labels['a.b/c']: label must be x",
      '.spec: at is a timestamp',
    ]);
  });

  test('a CRD rule that does not compile fails when the validator is built, naming the CRD', () => {
    const crd = {
      file: 'broken.yaml',
      apiVersion: 'test.dev/v1',
      kind: 'Thing',
      schema: { type: 'object', properties: { spec: { type: 'object', 'x-kubernetes-validations': [{ rule: 'self.a +' }] } } },
    };
    assert.throws(
      () => new ManifestValidator([crd]),
      (err: unknown) => isMandateError(err, 'CONFIG_INVALID') && /broken\.yaml.*\.spec.*does not parse/.test(err.message),
    );
  });
});

test('the validator reads its schemas from the CRD files and is built once per directory', async () => {
  const crds = await loadCrds();
  assert.deepEqual(crds.map((c) => c.kind).sort(), ['AgentIdentity', 'AgentPolicy', 'AgentTool']);
  const fromFile = parse(await readFile(`${defaultCrdDir}agenttool.yaml`, 'utf8')) as { spec: { versions: { schema: { openAPIV3Schema: unknown } }[] } };
  assert.deepEqual(crds.find((c) => c.kind === 'AgentTool')?.schema, fromFile.spec.versions[0]?.schema.openAPIV3Schema);
  assert.equal(await loadValidator(), validator, 'the same compiled validator is reused');
  assert.ok(validator.knows('v1', 'Secret'));
  assert.ok(!validator.knows('mandate.dev/v1', 'AgentPolicy'));
});
