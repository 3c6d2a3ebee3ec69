import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, KubeConfig } from '@kubernetes/client-node';
import { createKubeClients, isRetriableStatus, kubeCall, kubeStatus, loadKubeConfig, toKubeError } from '../../controller/src/kube/client.ts';
import { customResourceTransform, informerWatch, listPage, secretTransform } from '../../controller/src/kube/resources.ts';
import { MandateError } from '../../controller/src/errors.ts';

const status = (code: number, reason: string, message: string): string => JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message });

describe('kube client: errors', () => {
  test('a 4xx other than 408/429 is terminal, keeps its status and reason, and takes its message from the Status', () => {
    const err = new ApiException(403, 'Unknown API Status Code!', status(403, 'Forbidden', 'secrets is forbidden: User "x" cannot list'), { authorization: 'Bearer should-not-leak' });
    const e = toKubeError(err, 'list secrets');
    assert.equal(e.code, 'KUBE_REQUEST');
    assert.equal(e.retriable, false);
    assert.equal(e.details.status, 403);
    assert.equal(e.details.reason, 'Forbidden');
    assert.equal(e.message, 'list secrets: 403 Forbidden: secrets is forbidden: User "x" cannot list');
    assert.doesNotMatch(e.message, /should-not-leak|Headers/, 'ApiException\'s own text (headers, body) is not reused');
    assert.equal(e.cause, err);
  });

  test('429, 408 and 5xx are retriable', () => {
    for (const code of [429, 408, 500, 503, 504]) {
      const e = toKubeError(new ApiException(code, 'x', status(code, 'TooManyRequests', 'slow down'), {}), 'get lease');
      assert.equal(e.code, 'KUBE_UNAVAILABLE', String(code));
      assert.equal(e.retriable, true);
      assert.equal(kubeStatus(e), code);
    }
    assert.equal(isRetriableStatus(404), false);
    assert.equal(isRetriableStatus(409), false);
  });

  test('network failures are retriable and have no status', () => {
    const e = toKubeError(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }), 'watch agentpolicies');
    assert.equal(e.code, 'KUBE_UNAVAILABLE');
    assert.equal(e.details.status, undefined);
    assert.match(e.message, /unreachable \(ECONNREFUSED\)/);
  });

  test('Watch errors (statusCode) and Status objects are understood', () => {
    assert.equal(kubeStatus(toKubeError(Object.assign(new Error('Gone'), { statusCode: 410 }), 'watch')), 410);
    const e = toKubeError({ statusCode: 410, body: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 1 (2000)' } }, 'watch x');
    assert.equal(e.details.reason, 'Expired');
    assert.match(e.message, /too old resource version/);
  });

  test('a non-JSON body (a proxy\'s HTML page) does not end up in the message', () => {
    const e = toKubeError(new ApiException(502, 'Bad Gateway', '<html>secret internal page</html>', {}), 'list x');
    assert.equal(e.message, 'list x: 502: HTTP 502');
  });

  test('long server messages are cut', () => {
    const e = toKubeError(new ApiException(422, 'x', status(422, 'Invalid', 'v'.repeat(5000)), {}), 'create x');
    assert.ok(e.message.length < 600);
  });

  test('kubeCall passes results through and converts failures; MandateErrors pass unchanged', async () => {
    assert.equal(await kubeCall('get', () => Promise.resolve(7)), 7);
    await assert.rejects(
      kubeCall('get thing', () => Promise.reject(new ApiException(404, 'x', status(404, 'NotFound', 'thing not found'), {}))),
      (err: unknown) => err instanceof MandateError && err.code === 'KUBE_REQUEST' && err.details.status === 404,
    );
    const own = new MandateError('INTERNAL', 'mine');
    assert.equal(toKubeError(own, 'x'), own);
  });
});

describe('kube client: configuration', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mandate-kc-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const kubeconfig = (server: string, current = 'test'): string => `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "${server}", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: abc } }]
contexts: [{ name: test, context: { cluster: c, user: u } }]
current-context: ${current}
`;

  test('a kubeconfig file gives a config and typed clients for its server', async () => {
    const path = join(dir, 'ok.yaml');
    await writeFile(path, kubeconfig('https://127.0.0.1:6443'));
    const kc = loadKubeConfig({ kubeconfig: path });
    const clients = createKubeClients(kc);
    assert.equal(clients.server, 'https://127.0.0.1:6443');
    assert.equal(typeof clients.custom.listClusterCustomObject, 'function');
    assert.equal(typeof clients.core.listNamespacedSecret, 'function');
  });

  test('a missing file or a kubeconfig without a current cluster is a configuration error', async () => {
    assert.throws(() => loadKubeConfig({ kubeconfig: join(dir, 'absent.yaml') }), { code: 'CONFIG_INVALID' });
    const path = join(dir, 'nocontext.yaml');
    await writeFile(path, kubeconfig('https://127.0.0.1:6443', 'elsewhere'));
    assert.throws(() => loadKubeConfig({ kubeconfig: path }), { code: 'CONFIG_INVALID' });
  });

  test('in-cluster config outside a pod is a configuration error, not a client for https://undefined', () => {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    delete process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_PORT;
    try {
      assert.throws(() => loadKubeConfig({ kubeconfig: '' }), { code: 'CONFIG_INVALID', message: /not running in a pod/ });
    } finally {
      if (saved.host !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved.host;
      if (saved.port !== undefined) process.env.KUBERNETES_SERVICE_PORT = saved.port;
    }
  });

  test('the informer Watch\'s own inactivity timer is moved behind the watchdog (guards a client-node private field)', () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
    const w = informerWatch(kc, 300_000);
    assert.equal(Reflect.get(w, 'requestTimeoutMs'), 310_000);
  });
});

describe('kube resources: what the caches keep', () => {
  test('custom objects lose managedFields and the last-applied copy, get kind and apiVersion, and are frozen', () => {
    const raw = {
      metadata: {
        name: 'p',
        namespace: 'ns',
        resourceVersion: '12',
        managedFields: [{ manager: 'kubectl' }],
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":true}', keep: 'me' },
      },
      spec: { rules: [] },
    };
    const p = customResourceTransform('AgentPolicy')(raw);
    assert.ok(p);
    assert.equal(p.kind, 'AgentPolicy');
    assert.equal(p.apiVersion, 'mandate.dev/v1alpha1');
    assert.equal('managedFields' in p.metadata, false);
    assert.deepEqual(p.metadata.annotations, { keep: 'me' });
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.spec) && Object.isFrozen(p.metadata));
    assert.ok(raw.metadata.managedFields, 'the raw object is not modified');
  });

  test('objects without name, namespace, resourceVersion or spec are refused', () => {
    const t = customResourceTransform('AgentTool');
    assert.equal(t({ metadata: { name: 'x', namespace: 'ns' }, spec: {} }), undefined);
    assert.equal(t({ metadata: { name: 'x', resourceVersion: '1' }, spec: {} }), undefined);
    assert.equal(t({ metadata: { name: 'x', namespace: 'ns', resourceVersion: '1' } }), undefined);
    assert.equal(t('nonsense'), undefined);
  });

  test('Secrets keep only identity, version, type and data: annotations (last-applied holds values) are dropped', () => {
    const s = secretTransform({
      metadata: {
        name: 's',
        namespace: 'ns',
        resourceVersion: '3',
        uid: 'u1',
        creationTimestamp: new Date(),
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"stringData":{"token":"hunter2"}}' },
        labels: { a: 'b' },
      },
      type: 'Opaque',
      data: { token: Buffer.from('hunter2').toString('base64'), odd: 5 },
    });
    assert.deepEqual(s, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', namespace: 'ns', resourceVersion: '3', uid: 'u1' },
      type: 'Opaque',
      data: { token: 'aHVudGVyMg==' },
    });
    assert.ok(Object.isFrozen(s?.data));
  });

  test('list pages: raw JSON lists and client-node typed lists (_continue) alike', () => {
    assert.deepEqual(listPage({ items: [1], metadata: { resourceVersion: '9', continue: 'abc' } }), { items: [1], resourceVersion: '9', continue: 'abc' });
    assert.deepEqual(listPage({ items: [], metadata: { resourceVersion: '9', _continue: 'def' } }), { items: [], resourceVersion: '9', continue: 'def' });
    assert.deepEqual(listPage({ metadata: {} }), { items: [], resourceVersion: '' });
  });
});
