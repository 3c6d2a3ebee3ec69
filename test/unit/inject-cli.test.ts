// `mandate inject` run as a child process on golden inputs: what it prints is what the golden
// files say the webhook stores.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { mandate, repoRoot } from '../harness/mandate.ts';

const golden = join(repoRoot, 'test/golden/inject');
const dir = mkdtempSync(join(tmpdir(), 'mandate-inject-'));
const manifests = join(dir, 'manifests');
after(() => rmSync(dir, { recursive: true, force: true }));

// The golden identities, alone in a manifests folder (the case folders hold pods, not manifests).
mkdirSync(manifests);
copyFileSync(join(golden, 'identities.yaml'), join(manifests, 'identities.yaml'));

test('inject prints the golden injected pod and exits 0', async () => {
  const r = await mandate(['inject', '-f', join(golden, 'plain/pod.yaml'), '--identities', manifests, '--interception', 'off']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, readFileSync(join(golden, 'plain/injected.yaml'), 'utf8'));
});

test('a refusal prints the message on stderr, nothing on stdout, exit 1', async () => {
  const r = await mandate(['inject', '-f', join(golden, 'no-identity/pod.yaml'), '--manifests', manifests]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  const expected = (JSON.parse(readFileSync(join(golden, 'no-identity/decision.json'), 'utf8')) as { message: string }).message;
  assert.ok(r.stderr.includes(expected), r.stderr);
});

test('a skip prints the object unchanged with the reason on stderr', async () => {
  const r = await mandate(['inject', '-f', join(golden, 'plain/pod.yaml'), '--manifests', manifests, '--namespace-labels', 'team=research']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(parse(r.stdout), parse(readFileSync(join(golden, 'plain/pod.yaml'), 'utf8')));
  assert.match(r.stderr, /Pod\/research not injected: neither namespace agents nor the pod has mandate.dev\/inject=enabled/);
});

test('a Deployment\'s pod template is injected; other documents pass through', async () => {
  const file = join(dir, 'deploy.yaml');
  writeFileSync(
    file,
    [
      'apiVersion: v1\nkind: ServiceAccount\nmetadata: { name: billing, namespace: agents }',
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: billing, namespace: agents }\nspec:\n  selector: { matchLabels: { app: billing } }\n  template:\n    metadata: { labels: { app: billing } }\n    spec:\n      serviceAccountName: billing\n      containers: [{ name: agent, image: example.com/billing:1 }]',
    ].join('\n---\n'),
  );
  const r = await mandate(['inject', '-f', file, '--manifests', manifests, '--interception', 'on']);
  assert.equal(r.code, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as { kind: string; spec?: { template: { metadata: { labels: Record<string, string> }; spec: { initContainers: { name: string }[]; containers: { env: { name: string }[] }[] } } } });
  assert.deepEqual(docs.map((d) => d.kind), ['ServiceAccount', 'Deployment']);
  const tpl = docs[1]?.spec?.template;
  assert.equal(tpl?.metadata.labels['mandate.dev/injected'], 'true');
  assert.deepEqual(tpl?.spec.initContainers.map((c) => c.name), ['mandate-init', 'mandate-agent', 'envoy']);
  assert.deepEqual(tpl?.spec.containers[0]?.env.map((e) => e.name), ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE']);
});

test('bad flags exit 2', async () => {
  const r = await mandate(['inject', '--manifests', manifests]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--filename \(-f\) is required/);
  const bad = await mandate(['inject', '-f', join(golden, 'plain/pod.yaml'), '--manifests', manifests, '--interception', 'maybe']);
  assert.equal(bad.code, 2);
});
