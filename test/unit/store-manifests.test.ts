// Parsing manifest text into validated objects: where problems point (file, line, object,
// field), which kinds are accepted, duplicates, Secrets, references between objects.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadManifests, parseDocuments, type SourceFile } from '../../controller/src/store/manifests.ts';
import { formatProblem } from '../../controller/src/store/problems.ts';
import type { ManifestProblem } from '../../controller/src/store/snapshot.ts';
import { loadValidator, type ManifestValidator } from '../../controller/src/store/validate.ts';

let validator: ManifestValidator;
before(async () => {
  validator = await loadValidator();
});

const load = (...files: SourceFile[]): ReturnType<typeof loadManifests> => loadManifests(files, validator);
const file = (path: string, ...lines: string[]): SourceFile => ({ path, text: lines.join('\n') + '\n' });

const identityYaml = (name: string, extra: string[] = [], namespace = 'agents'): string[] => [
  'apiVersion: mandate.dev/v1alpha1',
  'kind: AgentIdentity',
  'metadata:',
  `  name: ${name}`,
  `  namespace: ${namespace}`,
  'spec:',
  '  owner: team@example.com',
  `  serviceAccount: ${name}`,
  ...extra,
];

function only(problems: readonly ManifestProblem[]): ManifestProblem {
  assert.equal(problems.length, 1, `expected one problem, got: ${problems.map(formatProblem).join(' | ')}`);
  return problems[0] as ManifestProblem;
}

describe('parsing', () => {
  test('multi-document YAML with comments and empty documents; documents are numbered in the file', () => {
    const { documents, problems } = parseDocuments(file('a.yaml', '# header', '---', 'a: 1', '---', '# empty', '---', '---', 'b: 2', '---'));
    assert.deepEqual(problems, []);
    assert.deepEqual(
      documents.map((d) => [d.index, d.value]),
      [
        [1, { a: 1 }],
        [4, { b: 2 }],
      ],
    );
  });

  test('bad YAML names the file, the line and the document', () => {
    const text = file('bad.yaml', ...identityYaml('ok'), '---', ...identityYaml('broken').slice(0, 6), '  owner: x', '   serviceAccount: broken');
    const { set, problems } = load(text);
    assert.ok(problems.length >= 1);
    for (const p of problems) {
      assert.equal(p.file, 'bad.yaml');
      assert.equal(p.object, 'document 2');
      assert.match(p.message, /^invalid YAML: /);
      assert.ok(p.line === 16 || p.line === 17, `line ${p.line} is at the broken mapping (lines 16-17)`);
    }
    assert.equal(set.identities.size, 1, 'the good document is still parsed (but the load as a whole fails)');
  });

  test('a tab used as indentation is reported at its line', () => {
    const p = only(load(file('x.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata:', '  name: s', 'stringData:', '\ttoken: x')).problems);
    assert.equal(p.line, 6);
    assert.match(p.message, /Tabs are not allowed as indentation/);
  });

  test('YAML errors never quote the source (Secret values live in these files)', () => {
    const { problems } = load(file('s.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata: {name: s}', 'stringData:', '  token: "hunter2-\\q-secret"'));
    const p = only(problems);
    assert.equal(p.line, 5);
    assert.doesNotMatch(formatProblem(p), /hunter2/);
    assert.match(p.message, /invalid escape sequence/);
  });

  test('JSON files are manifests too, with line numbers', () => {
    const json = JSON.stringify(
      { apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentIdentity', metadata: { name: 'j' }, spec: { owner: 'o', serviceAccount: 'j', colour: 'red' } },
      null,
      2,
    );
    const p = only(load({ path: 'j.json', text: json }).problems);
    assert.equal(p.field, '.spec.colour');
    assert.equal(p.line, json.split('\n').findIndex((l) => l.includes('colour')) + 1);
  });

  test('anchors, aliases and merge keys work as in kubectl; recursive aliases are refused', () => {
    const { set, problems } = load(
      file('m.yaml', 'apiVersion: mandate.dev/v1alpha1', 'kind: AgentPolicy', 'metadata: {name: p}', 'spec:', '  targets: {identities: [a]}', '  rules:', '    - &base {name: a, effect: Allow, actions: [x.y]}', '    - <<: *base', '      name: b'),
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(
      set.policies.get('default/p')?.spec.rules.map((r) => [r.name, r.effect, r.actions]),
      [
        ['a', 'Allow', ['x.y']],
        ['b', 'Allow', ['x.y']],
      ],
    );
    const p = only(load(file('r.yaml', ...identityYaml('a', ['  selector: &s {matchLabels: {x: y}, extra: *s}']))).problems);
    assert.equal(p.object, 'document 1');
    assert.match(p.message, /alias refers to a node that contains it/);
  });

  test('a document that is not a mapping is a problem', () => {
    const p = only(load(file('list.yaml', '- a', '- b')).problems);
    assert.equal(p.object, 'document 1');
    assert.match(p.message, /must be a mapping/);
  });
});

describe('kinds', () => {
  test('a typo in kind is a problem with a suggestion, never a silently dropped object', () => {
    const p = only(load(file('p.yaml', 'apiVersion: mandate.dev/v1alpha1', 'kind: AgentPolcy', 'metadata: {name: p, namespace: agents}', 'spec: {}')).problems);
    assert.equal(p.object, 'AgentPolcy agents/p');
    assert.equal(p.field, '.kind');
    assert.equal(p.line, 2);
    assert.match(p.message, /kind "AgentPolcy" is not supported \(did you mean AgentPolicy\?\)/);
  });

  test('other kinds and apiVersions are problems', () => {
    const cm = only(load(file('cm.yaml', 'apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: c}', 'data: {}')).problems);
    assert.match(cm.message, /kind "ConfigMap" is not supported; a manifest here is one of AgentIdentity \(mandate\.dev\/v1alpha1\)/);
    const version = only(load(file('v.yaml', 'apiVersion: mandate.dev/v1', ...identityYaml('a').slice(1))).problems);
    assert.equal(version.field, '.apiVersion');
    assert.match(version.message, /unsupported apiVersion "mandate.dev\/v1" for AgentIdentity; use mandate.dev\/v1alpha1/);
    const secret = only(load(file('s.yaml', 'apiVersion: apps/v1', 'kind: Secret', 'metadata: {name: s}')).problems);
    assert.match(secret.message, /use v1/);
    const missing = only(load(file('m.yaml', 'metadata: {name: m}')).problems);
    assert.equal(missing.field, '.kind');
    assert.equal(missing.object, 'document 1');
  });

  test('the namespace defaults to "default"', () => {
    const { set, problems } = load(file('d.yaml', ...identityYaml('a').filter((l) => !l.includes('namespace'))));
    assert.deepEqual(problems, []);
    assert.equal(set.identities.get('default/a')?.metadata.namespace, 'default');
  });
});

describe('schema problems', () => {
  test('name file, line, object and field', () => {
    const { problems, set } = load(file('bad.yaml', ...identityYaml('a', ['  trustLevel: ultra', '  sponsorz: [x]'])));
    assert.deepEqual(
      problems.map((p) => [p.file, p.line, p.object, p.field]).sort((a, b) => Number(a[1]) - Number(b[1])),
      [
        ['bad.yaml', 9, 'AgentIdentity agents/a', '.spec.trustLevel'],
        ['bad.yaml', 10, 'AgentIdentity agents/a', '.spec.sponsorz'],
      ],
    );
    assert.equal(set.identities.size, 0, 'an invalid object is not in the set');
  });

  test('a missing required field points at its parent', () => {
    const p = only(load(file('m.yaml', ...identityYaml('a').filter((l) => !l.includes('owner')))).problems);
    assert.equal(p.field, '.spec.owner');
    assert.equal(p.line, 6);
    assert.equal(p.message, 'required field is missing');
  });

  test('metadata.name must be a DNS-1123 subdomain', () => {
    const lines = identityYaml('Agent_A').map((l) => (l.includes('serviceAccount') ? '  serviceAccount: agent-a' : l));
    const p = only(load(file('n.yaml', ...lines)).problems);
    assert.equal(p.field, '.metadata.name');
    assert.equal(p.line, 4);
    assert.match(p.message, /DNS-1123 subdomain/);
  });

  test('defaults are applied and status is dropped in the loaded object', () => {
    const { set, problems } = load(file('d.yaml', ...identityYaml('a'), 'status:', '  spiffeID: spiffe://elsewhere/x'));
    assert.deepEqual(problems, []);
    const loaded = set.identities.get('agents/a');
    assert.equal(loaded?.spec.trustLevel, 'low');
    assert.equal(loaded?.spec.suspended, false);
    assert.equal(loaded?.status, undefined);
  });
});

describe('duplicates', () => {
  test('the same kind, namespace and name twice is a problem naming both files', () => {
    const p = only(load(file('first.yaml', ...identityYaml('twin')), file('second.yaml', ...identityYaml('twin'))).problems);
    assert.equal(p.file, 'second.yaml');
    assert.equal(p.object, 'AgentIdentity agents/twin');
    assert.match(p.message, /also defined in first\.yaml:1/);
  });

  test('same name in another namespace or of another kind is no duplicate', () => {
    const { problems, set } = load(
      file('a.yaml', ...identityYaml('x')),
      file('b.yaml', ...identityYaml('x', [], 'other')),
      file('c.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata: {name: x, namespace: agents}'),
    );
    assert.deepEqual(problems, []);
    assert.equal(set.identities.size, 2);
    assert.equal(set.secrets.size, 1);
  });

  test('a duplicate of an invalid object is still reported', () => {
    const { problems } = load(file('a.yaml', ...identityYaml('x', ['  bogus: 1'])), file('b.yaml', ...identityYaml('x')));
    assert.equal(problems.length, 2);
    assert.ok(problems.some((p) => p.file === 'b.yaml' && /duplicate/.test(p.message)));
  });
});

describe('Secrets', () => {
  test('values come from base64 data and stringData (which wins)', () => {
    const { set, problems } = load(
      file('s.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata: {name: s, namespace: agents}', 'type: Opaque', 'data:', '  a: aGVsbG8=', '  b: b2xk', 'stringData:', '  b: new', '  c: plain'),
    );
    assert.deepEqual(problems, []);
    const secret = set.secrets.get('agents/s');
    assert.deepEqual(Object.fromEntries(secret?.values ?? []), { a: 'hello', b: 'new', c: 'plain' });
    assert.equal(secret?.kind, 'Secret');
    assert.equal('data' in (secret ?? {}), false, 'the raw data is not kept');
  });

  test('bad base64 is a problem naming the key, never the value', () => {
    const { problems, set } = load(file('s.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata: {name: s}', 'data:', '  ok: aGVsbG8=', '  token: TOP-SECRET-VALUE!'));
    const p = only(problems);
    assert.equal(p.field, '.data.token');
    assert.equal(p.line, 6);
    assert.match(p.message, /not valid base64/);
    assert.doesNotMatch(formatProblem(p), /TOP-SECRET/);
    assert.equal(set.secrets.size, 0);
  });

  test('non-string values and unknown fields are problems that quote nothing', () => {
    const { problems } = load(file('s.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata: {name: s}', 'stringData:', '  pin: 123456', 'strinData: {k: v}'));
    assert.deepEqual(problems.map((p) => p.field).sort(), ['.strinData', '.stringData.pin']);
    for (const p of problems) assert.doesNotMatch(p.message, /123456/);
  });

  test('invalid keys and non-UTF-8 values are problems', () => {
    const { problems } = load(file('s.yaml', 'apiVersion: v1', 'kind: Secret', 'metadata: {name: s}', 'data:', '  "bad key": aGk=', '  bin: //79'));
    assert.deepEqual(
      problems.map((p) => [p.field, /invalid key/.test(p.message) || /not UTF-8/.test(p.message)]),
      [
        [".data['bad key']", true],
        ['.data.bin', true],
      ],
    );
  });
});

describe('references', () => {
  const tool = (secret: string, key: string): string[] => [
    'apiVersion: mandate.dev/v1alpha1',
    'kind: AgentTool',
    'metadata: {name: t, namespace: agents}',
    'spec:',
    '  hosts: [api.example.com]',
    `  credential: {secretRef: {name: ${secret}, key: ${key}}}`,
    '  actions: [{name: a.b, http: {method: GET, path: /}}]',
  ];
  const secret = ['apiVersion: v1', 'kind: Secret', 'metadata: {name: s, namespace: agents}', 'stringData: {token: x}'];

  test('a tool credential must name an existing Secret key in the tool namespace', () => {
    assert.deepEqual(load(file('t.yaml', ...tool('s', 'token')), file('s.yaml', ...secret)).problems, []);
    const missing = only(load(file('t.yaml', ...tool('nope', 'token')), file('s.yaml', ...secret)).problems);
    assert.equal(missing.field, '.spec.credential.secretRef.name');
    assert.match(missing.message, /Secret agents\/nope does not exist/);
    const key = only(load(file('t.yaml', ...tool('s', 'tok')), file('s.yaml', ...secret)).problems);
    assert.equal(key.field, '.spec.credential.secretRef.key');
    assert.equal(key.line, 6);
  });

  test('a broken Secret is reported once, not again through the tool', () => {
    const broken = ['apiVersion: v1', 'kind: Secret', 'metadata: {name: s, namespace: agents}', 'data: {token: "!!"}'];
    const p = only(load(file('t.yaml', ...tool('s', 'token')), file('s.yaml', ...broken)).problems);
    assert.equal(p.file, 's.yaml');
  });

  test('parents must exist in the namespace and must not form a cycle', () => {
    assert.deepEqual(load(file('a.yaml', ...identityYaml('child', ['  parent: root'])), file('b.yaml', ...identityYaml('root'))).problems, []);
    const orphan = only(load(file('a.yaml', ...identityYaml('child', ['  parent: root']))).problems);
    assert.equal(orphan.field, '.spec.parent');
    assert.match(orphan.message, /parent AgentIdentity agents\/root does not exist/);
    const cycle = load(file('a.yaml', ...identityYaml('a', ['  parent: b'])), file('b.yaml', ...identityYaml('b', ['  parent: a']))).problems;
    assert.deepEqual(
      cycle.map((p) => [p.object, p.message]),
      [
        ['AgentIdentity agents/a', 'parent chain is a cycle: a -> b -> a'],
        ['AgentIdentity agents/b', 'parent chain is a cycle: b -> a -> b'],
      ],
    );
  });

  test('parent == self is refused by the CRD rule', () => {
    const p = only(load(file('a.yaml', ...identityYaml('a', ['  parent: a']))).problems);
    assert.match(p.message, /spec.parent must name another AgentIdentity/);
  });
});

test('formatProblem puts file, line, object and field on one line', () => {
  assert.equal(
    formatProblem({ file: 'p.yaml', line: 3, object: 'AgentPolicy a/b', field: '.spec.rules[0].when', message: 'bad' }),
    'p.yaml:3: AgentPolicy a/b .spec.rules[0].when: bad',
  );
  assert.equal(formatProblem({ object: 'document 2', field: '', message: 'bad' }), 'document 2: bad');
});
