// The identity service over real HTTPS on loopback (attestation faked): the four endpoints, every
// error status, the in-flight cap, readiness, in-place renewal of the server certificate, metrics,
// and logs that never carry a token or a key.
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { request } from 'node:https';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { createRootCA, type CAMaterial } from '../../controller/src/identity/ca.ts';
import { jwksOf, newKeySet, type JwtKeySet } from '../../controller/src/identity/cluster/jwt-keyset.ts';
import { IdentityService } from '../../controller/src/identity/service/identity-service.ts';
import { certFingerprint, type CASource, type IssuingCA } from '../../controller/src/identity/service/issuing-ca.ts';
import { startIdentityServer, type IdentityServerHandle } from '../../controller/src/identity/service/server.ts';
import { ECDSA_SHA256, wc } from '../../controller/src/identity/keys.ts';
import { Pkcs10CertificateRequestGenerator, SubjectAlternativeNameExtension, X509Certificate } from '../../controller/src/identity/x509.ts';
import { createLogger } from '../../controller/src/log.ts';
import { createMetrics } from '../../controller/src/metrics.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';
import { AUDIENCE, FakeAttestation, identity, snapshotOf, TD, workload } from './idsvc-fakes.ts';

const ISSUER = 'https://mandate.mandate.svc';
const logLines: string[] = [];
const log = createLogger({ write: (l) => logLines.push(l), level: 'debug' });
const metrics = createMetrics({ defaultMetrics: false });

class SwitchableCA implements CASource {
  ca: IssuingCA | undefined;
  set(material: CAMaterial | undefined): void {
    this.ca = material ? { material, chainPem: '', fingerprint: certFingerprint(material.cert) } : undefined;
  }
  current(): IssuingCA | undefined {
    return this.ca;
  }
}

const caSource = new SwitchableCA();
let keys: JwtKeySet;
let snapshot: Snapshot | undefined;
const fake = new FakeAttestation();
const billing = workload('payments', 'billing-agent', 'billing-1');
const other = workload('payments', 'default', 'other-1');
const frozen = workload('payments', 'frozen-agent', 'frozen-1');
const foreign = { ...workload('payments', 'billing-agent', 'billing-2', {}, 'foreign-aud-token'), review: { ...billing.review, audiences: ['https://kubernetes.default.svc'] } };
let server: IdentityServerHandle;
let bundle: string;

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Record<string, unknown>;
}

function call(method: string, path: string, opts: { token?: string; body?: unknown; raw?: string | Buffer; contentType?: string } = {}): Promise<Reply> {
  const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.port,
        servername: 'localhost',
        ca: bundle,
        method,
        path,
        agent: false,
        headers: {
          ...(opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}),
          ...(payload !== undefined ? { 'content-type': opts.contentType ?? 'application/json' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }));
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

async function csr(sans?: string[]): Promise<string> {
  const k = await wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const extensions = sans ? [new SubjectAlternativeNameExtension(sans.map((value) => ({ type: 'url' as const, value })))] : [];
  return (await Pkcs10CertificateRequestGenerator.create({ keys: k, signingAlgorithm: ECDSA_SHA256, extensions }, wc)).toString('pem');
}

function expectError(r: Reply, status: number, code: string, pattern?: RegExp): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error, code);
  assert.equal(typeof r.body.message, 'string');
  if (pattern) assert.match(String(r.body.message), pattern);
}

function peerCertificate(): Promise<NodeX509> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: bundle }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      if (c) resolve(c);
      else reject(new Error('no peer certificate'));
    });
    s.on('error', reject);
  });
}

before(async () => {
  const root = await createRootCA({ trustDomain: TD, now: new Date() });
  caSource.set(root);
  bundle = root.bundlePem;
  keys = await newKeySet(new Date());
  snapshot = snapshotOf([
    identity('payments', 'billing-agent', { version: '2.0.0', certificateTTL: '30m', tokenTTL: '2m' }),
    identity('payments', 'frozen-agent', { suspended: true }),
  ]);
  fake.add(billing).add(other).add(frozen).add(foreign);
  const service = new IdentityService({
    trustDomain: TD,
    tokenAudience: AUDIENCE,
    issuer: ISSUER,
    defaultCertTtlSeconds: 3600,
    ca: caSource,
    jwtKeys: { signer: () => keys.keys[0], jwks: (): JSONWebKeySet => jwksOf(keys) },
    attestation: fake,
    snapshot: () => snapshot,
    log,
    metrics,
  });
  server = await startIdentityServer({ listen: '127.0.0.1:0', service, ca: caSource, serverNames: ['localhost', '127.0.0.1'], log, metrics, maxInFlight: 2, maxBodyBytes: 8 * 1024 });
});

after(async () => {
  await server.close();
});

describe('identity service endpoints', () => {
  test('POST /v1/svid: an SVID for the attested identity over TLS the bundle verifies', async () => {
    const r = await call('POST', '/v1/svid', { token: billing.token, body: { csr: await csr(), ttlSeconds: 900 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.equal(r.body.spiffeId, 'spiffe://cluster.local/ns/payments/agent/billing-agent');
    assert.equal(r.body.bundle, bundle);
    const cert = new X509Certificate(String(r.body.certificate));
    assert.deepEqual(cert.getExtension(SubjectAlternativeNameExtension)?.names.items.map((n) => n.value), ['spiffe://cluster.local/ns/payments/agent/billing-agent']);
    assert.equal(new Date(String(r.body.notAfter)).getTime(), cert.notAfter.getTime());
    assert.ok(cert.notAfter.getTime() - Date.now() <= 900_000 && cert.notAfter.getTime() - Date.now() > 880_000);
  });

  test('POST /v1/jwt: a JWT-SVID that verifies with the served JWKS and discovery', async () => {
    const r = await call('POST', '/v1/jwt', { token: billing.token, body: { audience: 'https://payments.example.com' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const discovery = await call('GET', '/.well-known/openid-configuration');
    assert.equal(discovery.body.issuer, ISSUER);
    assert.equal(discovery.body.jwks_uri, `${ISSUER}/keys`);
    const jwks = await call('GET', '/keys');
    assert.equal(jwks.status, 200);
    assert.match(String(jwks.headers['cache-control']), /max-age/);
    const { payload } = await jwtVerify(String(r.body.token), createLocalJWKSet(jwks.body as unknown as JSONWebKeySet), { issuer: ISSUER, audience: 'https://payments.example.com' });
    assert.equal(payload.sub, 'spiffe://cluster.local/ns/payments/agent/billing-agent');
    assert.equal(payload.version, '2.0.0');
    assert.equal(payload.instance, 'uid-billing-1');
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 120, "the identity's tokenTTL");
  });

  test('metrics count issuance and its latency', async () => {
    const text = await metrics.registry.metrics();
    assert.match(text, /mandate_certificates_issued_total\{kind="svid"\} [1-9]/);
    assert.match(text, /mandate_certificates_issued_total\{kind="jwt"\} [1-9]/);
    assert.match(text, /mandate_certificates_issued_total\{kind="server"\} [1-9]/);
    assert.match(text, /mandate_identity_issuance_duration_seconds_count\{kind="svid"\} [1-9]/);
  });
});

describe('identity service refusals', () => {
  test('401 without a bearer token, with WWW-Authenticate', async () => {
    const r = await call('POST', '/v1/svid', { body: { csr: 'x' } });
    expectError(r, 401, 'ATTESTATION_FAILED', /Authorization: Bearer/);
    assert.match(String(r.headers['www-authenticate']), /^Bearer/);
  });

  test('401 for a token of a foreign audience, 403 for a ServiceAccount without identity', async () => {
    expectError(await call('POST', '/v1/svid', { token: foreign.token, body: { csr: await csr() } }), 401, 'ATTESTATION_FAILED', /TokenReview for audience "mandate"/);
    expectError(await call('POST', '/v1/jwt', { token: other.token, body: { audience: 'x' } }), 403, 'IDENTITY_UNKNOWN', /no AgentIdentity for ServiceAccount payments\/default/);
  });

  test('a suspended identity gets nothing: neither an SVID nor a JWT', async () => {
    expectError(await call('POST', '/v1/svid', { token: frozen.token, body: { csr: await csr() } }), 403, 'IDENTITY_SUSPENDED');
    expectError(await call('POST', '/v1/jwt', { token: frozen.token, body: { audience: 'x' } }), 403, 'IDENTITY_SUSPENDED');
  });

  test('400 for a CSR asking for a SAN, a longer TTL, bad JSON, unknown or missing fields', async () => {
    expectError(await call('POST', '/v1/svid', { token: billing.token, body: { csr: await csr(['spiffe://cluster.local/ns/kube-system/agent/root']) } }), 400, 'CERT_REQUEST_INVALID', /subjectAltName/);
    expectError(await call('POST', '/v1/svid', { token: billing.token, body: { csr: await csr(), ttlSeconds: 3600 } }), 400, 'CERT_REQUEST_INVALID', /exceeds the identity's certificateTTL \(30m\)/);
    expectError(await call('POST', '/v1/svid', { token: billing.token, raw: '{"csr":' }), 400, 'REQUEST_MALFORMED', /not valid JSON/);
    expectError(await call('POST', '/v1/svid', { token: billing.token, body: { csr: 'x', spiffeId: 'spiffe://x/y' } }), 400, 'REQUEST_MALFORMED', /unknown field\(s\) "spiffeId"/);
    expectError(await call('POST', '/v1/jwt', { token: billing.token, body: {} }), 400, 'REQUEST_MALFORMED', /"audience" is required/);
    expectError(await call('POST', '/v1/jwt', { token: billing.token, body: ['x'] }), 400, 'REQUEST_MALFORMED', /JSON object/);
  });

  test('404, 405, 413, 415', async () => {
    expectError(await call('GET', '/v1/nothing'), 404, 'REQUEST_MALFORMED');
    const r = await call('GET', '/v1/svid');
    expectError(r, 405, 'REQUEST_MALFORMED');
    assert.equal(r.headers.allow, 'POST');
    expectError(await call('POST', '/v1/svid', { token: billing.token, raw: JSON.stringify({ csr: 'x'.repeat(10_000) }) }), 413, 'REQUEST_TOO_LARGE');
    expectError(await call('POST', '/v1/svid', { token: billing.token, raw: 'csr=x', contentType: 'application/x-www-form-urlencoded' }), 415, 'REQUEST_MALFORMED');
  });

  test('429 beyond the in-flight cap; the held requests still complete', async () => {
    let open: () => void = () => undefined;
    fake.gate = new Promise((r) => (open = r));
    const reviews = fake.reviewCalls;
    const held = [call('POST', '/v1/jwt', { token: billing.token, body: { audience: 'a' } }), call('POST', '/v1/jwt', { token: billing.token, body: { audience: 'b' } })];
    const deadline = Date.now() + 5000;
    while (fake.reviewCalls < reviews + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const third = await call('POST', '/v1/jwt', { token: billing.token, body: { audience: 'c' } });
    expectError(third, 429, 'RATE_LIMITED');
    assert.equal(third.headers['retry-after'], '1');
    open();
    fake.gate = Promise.resolve();
    for (const r of await Promise.all(held)) assert.equal(r.status, 200);
  });

  test('503 while identities or the CA are not loaded, without spending a TokenReview', async () => {
    const saved = snapshot;
    const reviews = fake.reviewCalls;
    snapshot = undefined;
    const r = await call('POST', '/v1/jwt', { token: billing.token, body: { audience: 'x' } });
    snapshot = saved;
    expectError(r, 503, 'NOT_READY', /identities are not loaded/);
    assert.equal(r.headers['retry-after'], '5');
    const ca = caSource.ca;
    caSource.ca = undefined;
    const r2 = await call('POST', '/v1/svid', { token: billing.token, body: { csr: await csr() } });
    caSource.ca = ca;
    expectError(r2, 503, 'NOT_READY', /CA is not loaded/);
    assert.equal(fake.reviewCalls, reviews);
  });
});

describe('server certificate', () => {
  test('renewed in place: new connections get the new certificate, no restart', async () => {
    const before = await peerCertificate();
    assert.equal(await server.renew(), false, 'not due yet');
    assert.equal(await server.renew(true), true);
    const after = await peerCertificate();
    assert.notEqual(after.serialNumber, before.serialNumber);
    assert.match(after.subjectAltName ?? '', /DNS:localhost/);
    assert.match(after.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  });

  test('a new CA leads to a new server certificate signed by it', async () => {
    const next = await createRootCA({ trustDomain: TD, now: new Date() });
    const oldBundle = bundle;
    caSource.set(next);
    assert.equal(await server.renew(), true, 'due because the CA changed');
    bundle = next.bundlePem;
    const cert = await peerCertificate();
    assert.ok(cert.verify(new NodeX509(next.certPem).publicKey));
    assert.equal(server.serverCertificate().caFingerprint, certFingerprint(next.cert));
    bundle = oldBundle;
    await assert.rejects(peerCertificate(), /self-signed|unable to verify|certificate/i);
    bundle = next.bundlePem;
  });
});

describe('logs', () => {
  test('never contain a token or key material', () => {
    const all = logLines.join('\n');
    assert.ok(logLines.some((l) => l.includes('issued X.509-SVID')));
    for (const w of [billing, other, frozen, foreign]) assert.ok(!all.includes(w.token), `token ${w.token} leaked`);
    assert.ok(!all.includes('PRIVATE KEY'));
    assert.ok(!all.includes(String(keys.keys[0]?.privateJwk.d)));
  });
});
