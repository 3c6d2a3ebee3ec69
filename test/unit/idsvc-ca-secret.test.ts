// The CA in a Secret: created once by racing replicas, loaded by the others, user-provided
// intermediates (Mandate's layout and cert-manager's) that must chain to a root of the bundle,
// overlapping roots during a rotation, and every replica following changes of the Secret.
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate as NodeX509 } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { createRootCA, issueSvid, type CAMaterial } from '../../controller/src/identity/ca.ts';
import { CA_SECRET_NAME, caFromSecret, loadOrCreateSecretCA } from '../../controller/src/identity/cluster/ca-secret.ts';
import { ClusterCA } from '../../controller/src/identity/cluster/cluster-ca.ts';
import type { SecretRecord } from '../../controller/src/identity/cluster/secret-client.ts';
import { isNewerVersion, SecretFollower } from '../../controller/src/identity/cluster/secret-follower.ts';
import { ECDSA_SHA256, generateKeyPair, wc, type CryptoKey } from '../../controller/src/identity/keys.ts';
import { certToPem, privateKeyToPem } from '../../controller/src/identity/pem.ts';
import { signCsr } from '../../controller/src/identity/service/csr.ts';
import { createLogger, silentLogger } from '../../controller/src/log.ts';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  Pkcs10CertificateRequestGenerator,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
  type X509Certificate,
} from '../../controller/src/identity/x509.ts';
import { FakeSecrets, identity, TD, until } from './idsvc-fakes.ts';

const NS = 'mandate';
const NOW = new Date();
const DAY = 86_400_000;

interface TestCA {
  readonly cert: X509Certificate;
  readonly certPem: string;
  readonly key: CryptoKey;
  readonly keyPem: string;
}

let serial = 1;
/** A CA certificate: self-signed when `issuer` is absent. */
async function makeCA(subject: string, opts: { issuer?: TestCA; pathLen?: number; spiffe?: boolean; notAfter?: Date } = {}): Promise<TestCA> {
  const keys = await generateKeyPair();
  const extensions = [
    new BasicConstraintsExtension(true, opts.pathLen, true),
    new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
    await SubjectKeyIdentifierExtension.create(keys.publicKey, false, wc),
    await AuthorityKeyIdentifierExtension.create(opts.issuer ? opts.issuer.cert.publicKey : keys.publicKey, false, wc),
    ...(opts.spiffe === false ? [] : [new SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${TD}` }])]),
  ];
  const base = { serialNumber: (serial++).toString(16).padStart(4, '0'), notBefore: new Date(NOW.getTime() - DAY), notAfter: opts.notAfter ?? new Date(NOW.getTime() + 30 * DAY), signingAlgorithm: ECDSA_SHA256, extensions };
  const cert = opts.issuer
    ? await X509CertificateGenerator.create({ ...base, subject, issuer: opts.issuer.cert.subjectName, publicKey: keys.publicKey, signingKey: opts.issuer.key }, wc)
    : await X509CertificateGenerator.createSelfSigned({ ...base, name: subject, keys }, wc);
  return { cert, certPem: certToPem(cert), key: keys.privateKey, keyPem: await privateKeyToPem(keys.privateKey) };
}

function secret(data: Record<string, string>, rv = '1'): SecretRecord {
  return { namespace: NS, name: CA_SECRET_NAME, uid: 'u', resourceVersion: rv, type: 'Opaque', data: new Map(Object.entries(data)) };
}

async function svidFrom(ca: CAMaterial): Promise<string> {
  const keys = await generateKeyPair();
  return (await issueSvid(ca, { spiffeId: `spiffe://${TD}/ns/a/agent/b`, publicKey: keys.publicKey, ttlSeconds: 600, now: NOW })).certPem;
}

function rootCount(bundle: string): number {
  return (bundle.match(/BEGIN CERTIFICATE/g) ?? []).length;
}

describe('load or create', () => {
  test('two replicas starting at once create the CA exactly once and use the same one', async () => {
    const secrets = new FakeSecrets();
    let gets = 0;
    let release: () => void = () => undefined;
    const bothRead = new Promise<void>((r) => (release = r));
    // Both GETs answer "absent" only after both were asked: a true race to create.
    secrets.beforeAnswer = async (op) => {
      if (op !== 'get' || gets >= 2) return;
      if (++gets === 2) release();
      await bothRead;
    };
    const [a, b] = await Promise.all([
      loadOrCreateSecretCA({ client: secrets, namespace: NS, trustDomain: TD, now: NOW, log: silentLogger }),
      loadOrCreateSecretCA({ client: secrets, namespace: NS, trustDomain: TD, now: NOW, log: silentLogger }),
    ]);
    assert.equal(secrets.calls.create, 2, 'both tried');
    assert.equal(secrets.calls.createdOk, 1, 'one won');
    assert.equal(a.fingerprint, b.fingerprint);
    assert.equal(a.material.certPem, secrets.peek(NS, CA_SECRET_NAME)?.data.get('ca.crt'));
    assert.deepEqual([...(secrets.peek(NS, CA_SECRET_NAME)?.data.keys() ?? [])].sort(), ['bundle.pem', 'ca.crt', 'ca.key']);
  });

  test('an existing CA is loaded, never replaced', async () => {
    const secrets = new FakeSecrets();
    const root = await createRootCA({ trustDomain: TD, now: NOW });
    secrets.put(NS, CA_SECRET_NAME, { 'ca.crt': root.certPem, 'ca.key': root.keyPem, 'bundle.pem': root.bundlePem });
    const ca = await loadOrCreateSecretCA({ client: secrets, namespace: NS, trustDomain: TD, now: NOW, log: silentLogger });
    assert.equal(ca.material.certPem, root.certPem);
    assert.equal(secrets.calls.create, 0);
  });

  test('API failures are CA_UNAVAILABLE with the reason and an RBAC hint on 403', async () => {
    const secrets = new FakeSecrets();
    secrets.failures.push(Object.assign(new Error('forbidden'), { code: 403, body: '{"message":"secrets \\"mandate-ca\\" is forbidden"}' }));
    await assert.rejects(loadOrCreateSecretCA({ client: secrets, namespace: NS, trustDomain: TD, now: NOW, log: silentLogger }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'CA_UNAVAILABLE');
      assert.match(err.message, /HTTP 403: secrets "mandate-ca" is forbidden \(the controller needs get and create/);
      return true;
    });
  });
});

describe('Secret layouts and user-provided CAs', () => {
  test('an intermediate (Mandate layout) signs; the chain goes with the SVID; only roots are trusted', async () => {
    const root = await makeCA('CN=Corp Root');
    const inter = await makeCA('CN=Mandate Intermediate', { issuer: root, pathLen: 0 });
    const ca = await caFromSecret(secret({ 'ca.crt': inter.certPem, 'ca.key': inter.keyPem, 'bundle.pem': root.certPem }), TD, NOW);
    assert.equal(ca.layout, 'mandate');
    assert.equal(ca.chainPem, inter.certPem);
    assert.equal(ca.material.bundlePem, root.certPem);
    const keys = await wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const csr = await Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_SHA256 }, wc);
    const id = identity('a', 'bot');
    const signed = await signCsr(ca, {
      csrPem: csr.toString('pem'),
      attestation: { namespace: 'a', serviceAccount: 'bot', pod: { name: 'p', uid: 'u' }, identity: id, identityName: 'bot', spiffeId: `spiffe://${TD}/ns/a/agent/bot` },
      defaultTtlSeconds: 600,
      now: NOW,
    });
    const [leafPem, chainPem] = signed.certificatePem.split(/(?<=-----END CERTIFICATE-----\n)/);
    const leaf = new NodeX509(leafPem ?? '');
    const mid = new NodeX509(chainPem ?? '');
    const top = new NodeX509(root.certPem);
    assert.ok(leaf.checkIssued(mid) && leaf.verify(mid.publicKey), 'leaf signed by the intermediate');
    assert.ok(mid.checkIssued(top) && mid.verify(top.publicKey), 'intermediate signed by the root');
  });

  test("cert-manager's layout: tls.crt (chain, root appended), SEC1 tls.key, ca.crt root", async () => {
    const root = await makeCA('CN=Corp Root');
    const inter = await makeCA('CN=Issued by cert-manager', { issuer: root, pathLen: 0 });
    const sec1 = createPrivateKey(inter.keyPem).export({ format: 'pem', type: 'sec1' }).toString();
    const ca = await caFromSecret(secret({ 'tls.crt': inter.certPem + root.certPem, 'tls.key': sec1, 'ca.crt': root.certPem }), TD, NOW);
    assert.equal(ca.layout, 'cert-manager');
    assert.equal(ca.chainPem, inter.certPem, 'the appended root is not part of the chain');
    assert.equal(ca.material.bundlePem, root.certPem);
  });

  test('two intermediates under a root that allows them', async () => {
    const root = await makeCA('CN=Corp Root');
    const upper = await makeCA('CN=Upper', { issuer: root, pathLen: 1 });
    const lower = await makeCA('CN=Lower', { issuer: upper, pathLen: 0 });
    const ca = await caFromSecret(secret({ 'ca.crt': lower.certPem + upper.certPem, 'ca.key': lower.keyPem, 'bundle.pem': root.certPem }), TD, NOW);
    assert.equal(ca.chainPem, lower.certPem + upper.certPem);
  });

  test('an intermediate whose root is not in the bundle is refused, saying what to add', async () => {
    const root = await makeCA('CN=Corp Root');
    const other = await makeCA('CN=Some Other Root');
    const inter = await makeCA('CN=Mandate Intermediate', { issuer: root });
    await assert.rejects(caFromSecret(secret({ 'ca.crt': inter.certPem, 'ca.key': inter.keyPem, 'bundle.pem': other.certPem }), TD, NOW), /no certificate in the trust bundle issued "CN=Mandate Intermediate"/);
    await assert.rejects(caFromSecret(secret({ 'ca.crt': inter.certPem, 'ca.key': inter.keyPem }), TD, NOW), /does not chain to a root/);
  });

  test("a chain longer than the root's pathLen is refused", async () => {
    const root = await makeCA('CN=Corp Root', { pathLen: 0 });
    const inter = await makeCA('CN=Mandate Intermediate', { issuer: root });
    await assert.rejects(caFromSecret(secret({ 'ca.crt': inter.certPem, 'ca.key': inter.keyPem, 'bundle.pem': root.certPem }), TD, NOW), /allows 0 CA certificate\(s\) below it/);
  });

  test('a CA without the trust domain SAN, an expired one, a wrong key and missing keys are refused by name', async () => {
    const root = await makeCA('CN=Corp Root');
    const bare = await makeCA('CN=No SPIFFE', { issuer: root, spiffe: false });
    await assert.rejects(caFromSecret(secret({ 'ca.crt': bare.certPem, 'ca.key': bare.keyPem, 'bundle.pem': root.certPem }), TD, NOW), /key ca\.crt: CA names no trust domain \(expected URI SAN spiffe:\/\/cluster\.local\)/);
    const other = await makeCA('CN=Other');
    const inter = await makeCA('CN=Inter', { issuer: root });
    await assert.rejects(caFromSecret(secret({ 'ca.crt': inter.certPem, 'ca.key': other.keyPem, 'bundle.pem': root.certPem }), TD, NOW), /key ca\.key: private key does not belong/);
    await assert.rejects(caFromSecret(secret({ 'ca.crt': inter.certPem }), TD, NOW), /Secret mandate\/mandate-ca key ca\.key: is missing/);
    const expired = await makeCA('CN=Expired', { issuer: root, notAfter: new Date(NOW.getTime() - 1000) });
    await assert.rejects(caFromSecret(secret({ 'ca.crt': expired.certPem, 'ca.key': expired.keyPem, 'bundle.pem': root.certPem }), TD, NOW), /key ca\.crt: CA expired at/);
    await assert.rejects(caFromSecret(secret({ 'ca.crt': 'garbage', 'ca.key': inter.keyPem }), TD, NOW), /key ca\.crt: /);
  });

  test('several roots in bundle.pem are all trusted (overlap during a rotation)', async () => {
    const oldRoot = await createRootCA({ trustDomain: TD, now: NOW });
    const newRoot = await createRootCA({ trustDomain: TD, now: NOW });
    const ca = await caFromSecret(secret({ 'ca.crt': newRoot.certPem, 'ca.key': newRoot.keyPem, 'bundle.pem': newRoot.certPem + oldRoot.certPem }), TD, NOW);
    assert.equal(rootCount(ca.material.bundlePem), 2);
    assert.equal(ca.chainPem, '');
    const trusted = ca.material.bundlePem.split(/(?<=-----END CERTIFICATE-----\n)/).filter(Boolean).map((p) => new NodeX509(p));
    for (const svid of [await svidFrom(oldRoot), await svidFrom(ca.material)]) {
      const leaf = new NodeX509(svid);
      assert.ok(trusted.some((r) => leaf.checkIssued(r) && leaf.verify(r.publicKey)), 'an SVID of either root verifies against the bundle');
    }
  });
});

describe('ClusterCA follows the Secret', () => {
  const running: Array<{ stop(): Promise<void> }> = [];
  after(async () => {
    await Promise.all(running.map((r) => r.stop()));
  });

  test('readiness waits for the CA; API failures are retried', async () => {
    const secrets = new FakeSecrets();
    secrets.failures.push(new Error('connect ECONNREFUSED'), new Error('connect ECONNREFUSED'));
    const ca = new ClusterCA({ client: secrets, namespace: NS, trustDomain: TD, log: silentLogger, resyncMs: 60_000, retryInitialMs: 5, retryMaxMs: 20 });
    running.push(ca);
    assert.equal(ca.readiness.ok(), false);
    assert.equal(ca.current(), undefined);
    ca.start();
    await ca.whenReady();
    assert.equal(ca.readiness.ok(), true);
    assert.equal(ca.lastError(), undefined);
    assert.ok(secrets.calls.get >= 3);
  });

  test('a rotation written to the Secret reaches a running replica; a broken update and a deletion do not take the CA away', async () => {
    const secrets = new FakeSecrets();
    const lines: string[] = [];
    const ca = new ClusterCA({ client: secrets, namespace: NS, trustDomain: TD, log: createLogger({ write: (l) => lines.push(l) }), resyncMs: 60_000 });
    running.push(ca);
    ca.start();
    const first = await ca.whenReady();
    await until(() => secrets.openWatches() === 1, 2000, 'watch');
    const changes: string[] = [];
    ca.onChange((c) => changes.push(c.fingerprint));

    const next = await createRootCA({ trustDomain: TD, now: NOW });
    secrets.put(NS, CA_SECRET_NAME, { 'ca.crt': next.certPem, 'ca.key': next.keyPem, 'bundle.pem': next.certPem + first.material.certPem });
    await until(() => ca.current()?.fingerprint !== first.fingerprint, 2000, 'the new CA');
    assert.equal(rootCount(ca.current()?.material.bundlePem ?? ''), 2);
    assert.equal(changes.length, 1);

    const good = ca.current()?.fingerprint;
    secrets.put(NS, CA_SECRET_NAME, { 'ca.crt': next.certPem });
    await until(() => ca.lastError() !== undefined, 2000, 'the broken update');
    assert.equal(ca.current()?.fingerprint, good);
    secrets.delete(NS, CA_SECRET_NAME);
    await until(() => lines.some((l) => l.includes('Secret was deleted')), 2000, 'the deletion');
    assert.equal(ca.current()?.fingerprint, good);
    assert.ok(!lines.some((l) => l.includes('PRIVATE KEY')), 'no key material in logs');
  });
});

describe('SecretFollower', () => {
  const followers: SecretFollower[] = [];
  after(async () => {
    await Promise.all(followers.map((f) => f.stop()));
  });

  function follow(secrets: FakeSecrets, seen: Array<string | undefined>, resyncMs = 60_000): SecretFollower {
    const f = new SecretFollower({
      client: secrets,
      namespace: NS,
      name: 's',
      resyncMs,
      log: silentLogger,
      backoffInitialMs: 5,
      backoffMaxMs: 20,
      onChange: (s) => {
        seen.push(s?.data.get('v'));
        return Promise.resolve();
      },
    });
    followers.push(f);
    f.start();
    return f;
  }

  test('a silent watch is covered by the periodic re-read', async () => {
    const secrets = new FakeSecrets();
    secrets.silent = true;
    const seen: Array<string | undefined> = [];
    follow(secrets, seen, 30);
    secrets.put(NS, 's', { v: '1' });
    await until(() => seen.includes('1'), 2000, 'the re-read');
    assert.deepEqual(seen, ['1'], 'delivered once');
  });

  test('410 Gone and a closed watch lead to a re-read and a new watch; nothing is lost', async () => {
    const secrets = new FakeSecrets();
    const seen: Array<string | undefined> = [];
    follow(secrets, seen);
    await until(() => secrets.openWatches() === 1, 2000, 'watch');
    secrets.put(NS, 's', { v: 'a' });
    await until(() => seen.includes('a'), 2000, 'a');
    const watches = secrets.calls.watch;
    secrets.failWatches(410);
    await until(() => secrets.calls.watch > watches && secrets.openWatches() === 1, 2000, 'a new watch after 410');
    secrets.endWatches();
    // A change while no watch is open is picked up by the re-read that precedes the next watch.
    secrets.put(NS, 's', { v: 'b' });
    await until(() => seen.includes('b'), 2000, 'b');
    assert.deepEqual(seen, ['a', 'b']);
  });

  test('resource versions never go backwards', () => {
    assert.equal(isNewerVersion('11', '9'), true);
    assert.equal(isNewerVersion('9', '11'), false);
    assert.equal(isNewerVersion('9', '9'), false);
    assert.equal(isNewerVersion('abc', 'abd'), true);
    assert.equal(isNewerVersion('5', undefined), true);
  });
});
