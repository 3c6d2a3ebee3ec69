// CSR signing at the identity service: the refusal matrix (SANs, CA flags, key usages, unknown
// extensions and attributes, RSA and other curves, bad signatures, longer TTLs) and what an
// accepted CSR yields: an SVID whose only SAN is the attested identity's SPIFFE ID.
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { describe, test } from 'node:test';
import { createRootCA, type CAMaterial } from '../../controller/src/identity/ca.ts';
import type { Attestation } from '../../controller/src/identity/service/attest.ts';
import { checkCsr, identityCertTtlSeconds, resolveSvidTtl, signCsr } from '../../controller/src/identity/service/csr.ts';
import { staticCASource, type IssuingCA } from '../../controller/src/identity/service/issuing-ca.ts';
import type { CryptoKeyPair } from '../../controller/src/identity/keys.ts';
import { agentSpiffeId } from '../../controller/src/identity/spiffe.ts';
import type {
  Attribute} from '../../controller/src/identity/x509.ts';
import {
  BasicConstraintsExtension,
  ChallengePasswordAttribute,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  Extension,
  KeyUsageFlags,
  KeyUsagesExtension,
  Pkcs10CertificateRequestGenerator,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
} from '../../controller/src/identity/x509.ts';
import { identity, TD } from './idsvc-fakes.ts';
import type { AgentIdentity } from '../../crds/generated/types.ts';

const wc = globalThis.crypto;
const NOW = new Date('2030-01-01T00:00:00Z');
const ca: CAMaterial = await createRootCA({ trustDomain: TD, now: new Date(NOW.getTime() - 86_400_000) });
const issuing: IssuingCA = staticCASource(ca).current() as IssuingCA;

type Keys = CryptoKeyPair;
const p256 = (): Promise<Keys> => wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);

async function csrPem(opts: { keys?: Keys; extensions?: Extension[]; attributes?: Attribute[]; name?: string; hash?: string } = {}): Promise<string> {
  const keys = opts.keys ?? (await p256());
  const signingAlgorithm = keys.privateKey.algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: opts.hash ?? 'SHA-256' } : keys.privateKey.algorithm;
  const csr = await Pkcs10CertificateRequestGenerator.create(
    { keys, signingAlgorithm, ...(opts.name ? { name: opts.name } : {}), ...(opts.extensions ? { extensions: opts.extensions } : {}), ...(opts.attributes ? { attributes: opts.attributes } : {}) },
    wc,
  );
  return csr.toString('pem');
}

function attestationFor(id: AgentIdentity): Attestation {
  const namespace = id.metadata.namespace ?? 'default';
  return {
    namespace,
    serviceAccount: id.spec.serviceAccount,
    pod: { name: 'pod-1', uid: 'uid-1' },
    identity: id,
    identityName: id.metadata.name,
    spiffeId: agentSpiffeId(TD, namespace, id.metadata.name),
  };
}

async function refused(pem: string | Promise<string>, pattern: RegExp): Promise<void> {
  const text = await pem;
  await assert.rejects(checkCsr(text), (err: unknown) => {
    assert.equal((err as { code?: string }).code, 'CERT_REQUEST_INVALID');
    assert.match((err as Error).message, pattern);
    return true;
  });
}

describe('CSR refusal matrix', () => {
  test('a SAN of any kind is refused, even one equal to the identity', async () => {
    await refused(csrPem({ extensions: [new SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://cluster.local/ns/a/agent/other' }])] }), /subjectAltName/);
    await refused(csrPem({ extensions: [new SubjectAlternativeNameExtension([{ type: 'dns', value: 'evil.example.com' }])] }), /subjectAltName/);
    await refused(csrPem({ extensions: [new SubjectAlternativeNameExtension([{ type: 'url', value: agentSpiffeId(TD, 'a', 'bot') }])] }), /subjectAltName/);
  });

  test('basicConstraints cA=true is refused', async () => {
    await refused(csrPem({ extensions: [new BasicConstraintsExtension(true, 0, true)] }), /CA certificate/);
  });

  test('key usages beyond digitalSignature are refused', async () => {
    await refused(csrPem({ extensions: [new KeyUsagesExtension(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign)] }), /beyond digitalSignature/);
    await refused(csrPem({ extensions: [new KeyUsagesExtension(KeyUsageFlags.keyEncipherment)] }), /beyond digitalSignature/);
  });

  test('extended key usages other than serverAuth/clientAuth are refused', async () => {
    await refused(csrPem({ extensions: [new ExtendedKeyUsageExtension([ExtendedKeyUsage.codeSigning])] }), /extended key usages/);
  });

  test('an unknown extension is refused, critical or not, and named', async () => {
    await refused(csrPem({ extensions: [new Extension('1.2.3.4.5', false, new Uint8Array([5, 0]))] }), /extension 1\.2\.3\.4\.5/);
    await refused(csrPem({ extensions: [new Extension('1.3.6.1.4.1.99999.1', true, new Uint8Array([5, 0]))] }), /1\.3\.6\.1\.4\.1\.99999\.1/);
  });

  test('attributes other than extensionRequest are refused', async () => {
    await refused(csrPem({ attributes: [new ChallengePasswordAttribute('hunter2')] }), /attribute 1\.2\.840\.113549\.1\.9\.7/);
  });

  test('an RSA key is refused', async () => {
    const rsa = (await wc.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    ));
    await refused(csrPem({ keys: rsa }), /ECDSA P-256 or P-384, got RSASSA-PKCS1-v1_5 2048-bit/);
  });

  test('a P-521 key is refused', async () => {
    const keys = (await wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, ['sign', 'verify']));
    await refused(csrPem({ keys, hash: 'SHA-512' }), /got ECDSA P-521/);
  });

  test('an ECDSA signature over SHA-1 is refused', async () => {
    await refused(csrPem({ hash: 'SHA-1' }), /SHA-256\/384\/512, got ECDSA SHA-1/);
  });

  test('a bad self-signature is refused', async () => {
    const pem = await csrPem();
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    // The signature BIT STRING is at the end: flip a bit inside it.
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await refused(tampered, /does not verify|not a valid PKCS#10/);
  });

  test('a CSR whose key was swapped after signing is refused', async () => {
    const a = await Pkcs10CertificateRequestGenerator.create({ keys: await p256(), signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } }, wc);
    const b = await Pkcs10CertificateRequestGenerator.create({ keys: await p256(), signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } }, wc);
    // Same layout for both: take b's SubjectPublicKeyInfo into a's bytes.
    const da = Buffer.from(a.rawData);
    const db = Buffer.from(b.rawData);
    const spkiA = Buffer.from(a.publicKey.rawData);
    const spkiB = Buffer.from(b.publicKey.rawData);
    const at = da.indexOf(spkiA);
    assert.ok(at > 0);
    spkiB.copy(da, at);
    assert.ok(!da.equals(db));
    await refused(`-----BEGIN CERTIFICATE REQUEST-----\n${da.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`, /does not verify/);
  });

  test('not a CSR: wrong block, two blocks, garbage, not a string', async () => {
    await refused(ca.certPem, /CERTIFICATE REQUEST/);
    await refused((await csrPem()) + (await csrPem()), /exactly one PEM block/);
    await refused('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', /not a valid PKCS#10/);
    await refused('hello', /PEM/);
    await assert.rejects(checkCsr(42), /must be a PEM certificate request/);
  });

  test('a repeated extension is refused', async () => {
    const ku = new KeyUsagesExtension(KeyUsageFlags.digitalSignature);
    await refused(csrPem({ extensions: [ku, ku] }), /repeats extension 2\.5\.29\.15/);
  });
});

describe('accepted CSRs', () => {
  test('P-256 and P-384 keys are accepted; the subject and harmless extensions are ignored', async () => {
    assert.equal((await checkCsr(await csrPem())).curve, 'P-256');
    const p384 = (await wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']));
    assert.equal((await checkCsr(await csrPem({ keys: p384, hash: 'SHA-384' }))).curve, 'P-384');
    const keys = await p256();
    const ok = await csrPem({
      keys,
      name: 'CN=whoever, O=Anything',
      extensions: [
        new BasicConstraintsExtension(false),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
        new ExtendedKeyUsageExtension([ExtendedKeyUsage.clientAuth, ExtendedKeyUsage.serverAuth]),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, wc),
      ],
    });
    assert.equal((await checkCsr(ok)).curve, 'P-256');
  });

  test('the SVID carries exactly the attested SPIFFE ID, cA=false, the CSR key, and the identity TTL', async () => {
    const keys = await p256();
    const id = identity('payments', 'billing-agent', { certificateTTL: '30m' });
    const signed = await signCsr(issuing, { csrPem: await csrPem({ keys, name: 'CN=spiffe://evil/ns/x/agent/y' }), attestation: attestationFor(id), defaultTtlSeconds: 3600, now: NOW });
    const cert = new X509Certificate(signed.certificatePem);
    const san = cert.getExtension(SubjectAlternativeNameExtension);
    assert.deepEqual(san?.names.items.map((n) => [n.type, n.value]), [['url', 'spiffe://cluster.local/ns/payments/agent/billing-agent']]);
    assert.equal(cert.subject, '');
    assert.equal(cert.getExtension(BasicConstraintsExtension)?.ca, false);
    assert.equal(signed.issued.notAfter.getTime(), NOW.getTime() + 30 * 60_000);
    assert.ok(Buffer.from(cert.publicKey.rawData).equals(Buffer.from(await wc.subtle.exportKey('spki', keys.publicKey))));
    // Node's own X.509 code agrees that the root signed it.
    assert.ok(new NodeX509(signed.certificatePem).verify(new NodeX509(ca.certPem).publicKey));
    assert.equal(signed.certificatePem, signed.issued.certPem, 'a root CA adds no chain');
  });
});

describe('TTL', () => {
  const id = identity('a', 'bot', { certificateTTL: '1h' });

  test('shorter than certificateTTL is granted as asked', () => {
    assert.equal(resolveSvidTtl(600, id, 7200, NOW), 600);
    assert.equal(resolveSvidTtl(3600, id, 7200, NOW), 3600);
  });

  test('longer than certificateTTL is refused, not clamped', () => {
    assert.throws(() => resolveSvidTtl(3601, id, 7200, NOW), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'CERT_REQUEST_INVALID');
      assert.match(err.message, /exceeds the identity's certificateTTL \(1h\); ask for 3600 or less/);
      return true;
    });
  });

  test('nonsense TTLs are refused', () => {
    assert.throws(() => resolveSvidTtl(59, id, 7200, NOW), /at least 60/);
    assert.throws(() => resolveSvidTtl(1.5, id, 7200, NOW), /whole number/);
    assert.throws(() => resolveSvidTtl('600', id, 7200, NOW), /whole number/);
  });

  test('without certificateTTL the configured default applies, capped at 24 h', () => {
    assert.equal(identityCertTtlSeconds(identity('a', 'b'), 1800), 1800);
    assert.equal(identityCertTtlSeconds(identity('a', 'b'), 999_999), 86_400);
    assert.equal(resolveSvidTtl(undefined, identity('a', 'b'), 1800, NOW), 1800);
  });

  test('the certificate never outlives the identity', () => {
    const expiring = identity('a', 'bot', { certificateTTL: '1h', expiresAt: new Date(NOW.getTime() + 600_000).toISOString() });
    assert.equal(resolveSvidTtl(undefined, expiring, 3600, NOW), 600);
    const expired = identity('a', 'bot', { expiresAt: new Date(NOW.getTime() - 1).toISOString() });
    assert.throws(() => resolveSvidTtl(undefined, expired, 3600, NOW), (err: Error & { code?: string }) => err.code === 'IDENTITY_SUSPENDED');
  });

  test('a longer TTL in signCsr is refused before anything is signed', async () => {
    await assert.rejects(
      signCsr(issuing, { csrPem: await csrPem(), ttlSeconds: 7200, attestation: attestationFor(id), defaultTtlSeconds: 3600, now: NOW }),
      /exceeds the identity's certificateTTL/,
    );
  });
});
