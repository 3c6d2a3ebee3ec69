// The authz server authenticates a TLS connection once and remembers its peer: proven here with
// a real grpc-js server and clients over mTLS, counting how often the certificate is examined.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRootCA, issueServerCert, issueSvid, type CAMaterial } from '../../controller/src/identity/ca.ts';
import { generateKeyPair } from '../../controller/src/identity/keys.ts';
import { privateKeyToPem } from '../../controller/src/identity/pem.ts';
import { createPeerAuthenticator } from '../../controller/src/identity/peer.ts';
import { agentSpiffeId } from '../../controller/src/identity/spiffe.ts';
import { MemoryCertificateProvider } from '../../controller/src/authz/cert-provider.ts';
import { authPackageDefinition, authorizationService } from '../../controller/src/authz/protos.ts';
import { startAuthzServer, type AuthzServerHandle } from '../../controller/src/authz/server.ts';
import type { PeerIdentity } from '../../controller/src/authz/types.ts';
import { createMetrics } from '../../controller/src/metrics.ts';
import { silentLogger } from '../../controller/src/log.ts';
import { authorizationClient, httpCheckRequest } from '../harness/envoy-client.ts';

let ca: CAMaterial;
let server: AuthzServerHandle;
let clock = Date.now();
let examined = 0;
const seen: string[] = [];

async function svid(name: string) {
  const keys = await generateKeyPair();
  const issued = await issueSvid(ca, { spiffeId: agentSpiffeId('cluster.local', 'agents', name), publicKey: keys.publicKey, ttlSeconds: 600, now: new Date() });
  return { ca: ca.bundlePem, cert: issued.certPem, key: await privateKeyToPem(keys.privateKey), notAfter: issued.notAfter };
}

before(async () => {
  ca = await createRootCA({ trustDomain: 'cluster.local', now: new Date() });
  const keys = await generateKeyPair();
  const cert = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], publicKey: keys.publicKey, ttlSeconds: 3600, now: new Date() });
  const peers = createPeerAuthenticator({ trustDomain: 'cluster.local' });
  server = await startAuthzServer({
    listen: '127.0.0.1:0',
    maxRequestBytes: 1 << 20,
    certificates: new MemoryCertificateProvider({ caPem: ca.bundlePem, certPem: cert.certPem, keyPem: await privateKeyToPem(keys.privateKey) }),
    packageDefinition: authPackageDefinition(),
    service: authorizationService(),
    authenticate: (c) => {
      examined++;
      return peers.authenticate(c, new Date(clock));
    },
    handler: (peer: PeerIdentity) => {
      seen.push(peer.name);
      return Promise.resolve({ status: { code: 0 } });
    },
    log: silentLogger,
    metrics: createMetrics({ defaultMetrics: false }),
    now: () => clock,
  });
});

after(async () => {
  await server?.close(0);
});

const request = httpCheckRequest({ method: 'GET', host: 'api.example.com', path: '/' });

test('one connection is authenticated once; another connection gets its own identity; expiry still applies', async () => {
  const alice = await svid('alice');
  const bob = await svid('bob');
  const a = authorizationClient(server.port, alice);
  const b = authorizationClient(server.port, bob);
  try {
    for (let i = 0; i < 5; i++) await a.check(request);
    assert.equal(examined, 1, 'five calls on one connection examine the certificate once');
    await b.check(request);
    await a.check(request);
    assert.equal(examined, 2);
    assert.deepEqual(seen, ['alice', 'alice', 'alice', 'alice', 'alice', 'bob', 'alice']);

    clock = alice.notAfter.getTime() + 1; // the connection outlives alice's certificate
    await assert.rejects(a.check(request), (err: { code?: number; details?: string }) => err.code === 16 && /expired/.test(err.details ?? ''));
  } finally {
    a.close();
    b.close();
  }
});
