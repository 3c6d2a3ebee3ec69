// The API server adapters of attestation against a local HTTPS stand-in: credentials from the
// KubeConfig on every call, one kept-alive connection for many calls, the TokenReview request
// Mandate sends, and how API failures surface (NOT_READY with the server's reason and an RBAC
// hint; a missing pod is "no pod", not an error).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { createRootCA, issueServerCert } from '../../controller/src/identity/ca.ts';
import { kubeReason, kubeStatus } from '../../controller/src/identity/cluster/kube-errors.ts';
import { generateKeyPair } from '../../controller/src/identity/keys.ts';
import { privateKeyToPem } from '../../controller/src/identity/pem.ts';
import { kubeAttestationPorts, podFacts } from '../../controller/src/identity/service/kube-attest.ts';
import { kubeJsonClient } from '../../controller/src/identity/service/kube-http.ts';

interface Seen {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  readonly body: string;
  readonly socket: number;
}

const seen: Seen[] = [];
let server: Server;
let kc: KubeConfig;
let sockets = 0;
const API_TOKEN = 'controller-credential-abc';

function status(code: number, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, code });
}

before(async () => {
  const ca = await createRootCA({ trustDomain: 'cluster.local', now: new Date() });
  const keys = await generateKeyPair();
  const cert = await issueServerCert(ca, { ipAddresses: ['127.0.0.1'], publicKey: keys.publicKey, ttlSeconds: 3600, now: new Date() });
  server = createServer({ cert: cert.certPem, key: await privateKeyToPem(keys.privateKey) }, (req, res) => {
    const socketId = (req.socket as unknown as { mandateId?: number }).mandateId ?? -1;
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization, body, socket: socketId });
      const reply = (code: number, payload: string): void => {
        res.writeHead(code, { 'content-type': 'application/json' }).end(payload);
      };
      if (req.url === '/apis/authentication.k8s.io/v1/tokenreviews') {
        const token = (JSON.parse(body) as { spec: { token: string } }).spec.token;
        if (token.startsWith('deny-')) return reply(403, status(403, 'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:mandate:mandate" cannot create resource "tokenreviews"'));
        return reply(201, JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status: { authenticated: true, audiences: ['mandate'], user: { username: 'system:serviceaccount:a:b' } } }));
      }
      if (req.url === '/api/v1/namespaces/a/pods/there') {
        return reply(200, JSON.stringify({ metadata: { name: 'there', namespace: 'a', uid: 'u1', labels: { app: 'x' }, deletionTimestamp: '2030-01-01T00:00:00Z' }, spec: { serviceAccountName: 'b' }, status: { phase: 'Running' } }));
      }
      if (req.url === '/api/v1/namespaces/a/pods/broken') return reply(500, status(500, 'etcdserver: request timed out'));
      return reply(404, status(404, 'pods "gone" not found'));
    });
  });
  server.on('secureConnection', (s) => {
    (s as unknown as { mandateId: number }).mandateId = ++sockets;
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, caData: Buffer.from(ca.certPem).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'u', token: API_TOKEN }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
});

after(() => {
  server.closeAllConnections();
  server.close();
});

describe('API server adapters for attestation', () => {
  test('TokenReview names our audience; credentials come from the KubeConfig; one connection serves many calls', async () => {
    const ports = kubeAttestationPorts(kc);
    try {
      const before = seen.length;
      for (let i = 0; i < 5; i++) {
        const r = await ports.reviewToken('agent-token', 'mandate');
        assert.equal(r.authenticated, true);
        assert.deepEqual(r.audiences, ['mandate']);
      }
      const calls = seen.slice(before);
      assert.equal(calls.length, 5);
      assert.deepEqual(JSON.parse(calls[0]?.body ?? ''), { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: 'agent-token', audiences: ['mandate'] } });
      assert.ok(calls.every((c) => c.method === 'POST' && c.authorization === `Bearer ${API_TOKEN}`));
      assert.equal(new Set(calls.map((c) => c.socket)).size, 1, 'kept alive');
    } finally {
      ports.close();
    }
  });

  test('a pod becomes plain facts; a missing pod is undefined', async () => {
    const ports = kubeAttestationPorts(kc);
    try {
      assert.deepEqual(await ports.getPod('a', 'there'), {
        namespace: 'a',
        name: 'there',
        uid: 'u1',
        serviceAccountName: 'b',
        labels: { app: 'x' },
        phase: 'Running',
        deletionTimestamp: '2030-01-01T00:00:00Z',
      });
      assert.equal(await ports.getPod('a', 'gone'), undefined);
    } finally {
      ports.close();
    }
  });

  test('API failures are NOT_READY with the API server reason, and an RBAC hint on 403', async () => {
    const ports = kubeAttestationPorts(kc);
    try {
      await assert.rejects(ports.reviewToken('deny-Zq8secretvalue', 'mandate'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'NOT_READY');
        assert.match(err.message, /^TokenReview failed: HTTP 403: tokenreviews.authentication.k8s.io is forbidden: .*\(the controller's ServiceAccount needs create on tokenreviews/);
        assert.ok(!err.message.includes('Zq8secretvalue'), 'the token is never in the message');
        return true;
      });
      await assert.rejects(ports.getPod('a', 'broken'), /reading pod a\/broken failed: HTTP 500: etcdserver: request timed out/);
    } finally {
      ports.close();
    }
  });

  test('an unreachable API server is NOT_READY, not a refusal', async () => {
    const dead = new KubeConfig();
    dead.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const ports = kubeAttestationPorts(dead, kubeJsonClient(dead, { timeoutMs: 2000 }));
    await assert.rejects(ports.reviewToken('x', 'mandate'), (err: Error & { code?: string }) => err.code === 'NOT_READY' && /ECONNREFUSED/.test(err.message));
    ports.close();
  });

  test('podFacts accepts the typed model too (Date timestamps, defaulted ServiceAccount)', () => {
    const pod: V1Pod = { metadata: { name: 'p', namespace: 'n', uid: 'u', deletionTimestamp: new Date('2030-01-01T00:00:00Z') }, spec: { containers: [] } };
    assert.deepEqual(podFacts(pod), { namespace: 'n', name: 'p', uid: 'u', serviceAccountName: 'default', labels: {}, deletionTimestamp: '2030-01-01T00:00:00.000Z' });
  });

  test('kubeStatus / kubeReason read client-node errors without their headers', () => {
    const apiException = Object.assign(new Error('HTTP-Code: 409\nMessage: ...\nHeaders: {"audit-id":"x"}'), { code: 409, body: { kind: 'Status', message: 'secrets "mandate-ca" already exists' } });
    assert.equal(kubeStatus(apiException), 409);
    assert.equal(kubeReason(apiException), 'HTTP 409: secrets "mandate-ca" already exists');
    assert.equal(kubeStatus(Object.assign(new Error('x'), { code: 'ECONNRESET' })), undefined);
    assert.equal(kubeReason(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'socket hang up (ECONNRESET)');
  });
});
