import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509 } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { isMandateError } from '../../controller/src/errors.ts';
import { createRootCA, issueServerCert, issueSvid, type CAMaterial } from '../../controller/src/identity/ca.ts';
import { certificateExtensions, readTlv } from '../../controller/src/identity/der.ts';
import { generateKeyPair, wc } from '../../controller/src/identity/keys.ts';
import { analyzePeerCertificate, createPeerAuthenticator, peerFromCertificate } from '../../controller/src/identity/peer.ts';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  X509CertificateGenerator,
  type Extension,
  type JsonGeneralName,
} from '../../controller/src/identity/x509.ts';

const TD = 'cluster.local';
const NOW = new Date('2030-06-01T00:00:00.000Z');
const AGENT = 'spiffe://cluster.local/ns/payments/agent/refund-bot';

const ca = await createRootCA({ trustDomain: TD, now: NOW });
const keys = await generateKeyPair();
const svid = await issueSvid(ca, { spiffeId: AGENT, publicKey: keys.publicKey, ttlSeconds: 3600, now: NOW });
const der = Buffer.from(svid.cert.rawData);

interface Craft {
  readonly names?: JsonGeneralName[];
  /** A second subjectAltName extension (RFC 5280 forbids repeating an extension). */
  readonly secondSan?: JsonGeneralName[];
  readonly isCA?: boolean;
  readonly usages?: KeyUsageFlags | null;
  readonly eku?: string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** Signs whatever the test needs with the real CA key: the point is what peer.ts accepts. */
async function craft(issuer: CAMaterial, c: Craft): Promise<Buffer> {
  const extensions: Extension[] = [
    new BasicConstraintsExtension(c.isCA ?? false, undefined, true),
    new AuthorityKeyIdentifierExtension('00112233', false),
  ];
  const usages = c.usages === undefined ? KeyUsageFlags.digitalSignature : c.usages;
  if (usages !== null) extensions.push(new KeyUsagesExtension(usages, true));
  if (c.eku) extensions.push(new ExtendedKeyUsageExtension(c.eku, false));
  if (c.names) extensions.push(new SubjectAlternativeNameExtension(c.names, true));
  if (c.secondSan) extensions.push(new SubjectAlternativeNameExtension(c.secondSan, false));
  const cert = await X509CertificateGenerator.create(
    {
      issuer: issuer.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: issuer.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      notBefore: c.notBefore ?? new Date(NOW.getTime() - 60_000),
      notAfter: c.notAfter ?? new Date(NOW.getTime() + 3600_000),
      extensions,
    },
    wc,
  );
  return Buffer.from(cert.rawData);
}

function refuses(input: Parameters<typeof peerFromCertificate>[0], reason: RegExp, now = NOW): void {
  const auth = createPeerAuthenticator({ trustDomain: TD });
  assert.throws(() => auth.authenticate(input, now), (e) => isMandateError(e, 'PEER_UNAUTHENTICATED') && reason.test(e.message));
}

void test('an SVID yields the agent identity, from DER, node X509Certificate and a TLS PeerCertificate', () => {
  const expected = { spiffeId: AGENT, namespace: 'payments', name: 'refund-bot', serial: svid.serial };
  assert.deepEqual({ ...peerFromCertificate(der, TD, NOW) }, expected);
  assert.deepEqual({ ...peerFromCertificate(new NodeX509(der), TD, NOW) }, expected);
  const tlsShape = { raw: der, subjectaltname: `URI:${AGENT}` } as unknown as PeerCertificate;
  assert.deepEqual({ ...peerFromCertificate(tlsShape, TD, NOW) }, expected);
  assert.deepEqual({ ...peerFromCertificate(new Uint8Array(der), TD, NOW) }, expected);
});

void test('no certificate at all is refused', () => {
  refuses(undefined, /no client certificate/);
  refuses(null, /no client certificate/);
  refuses({} as PeerCertificate, /no client certificate/);
  refuses(Buffer.alloc(0), /no client certificate/);
});

void test('two URI SANs are refused', async () => {
  const two = await craft(ca, { names: [{ type: 'url', value: AGENT }, { type: 'url', value: 'spiffe://cluster.local/ns/payments/agent/other' }] });
  refuses(two, /has 2 URI SANs; an X\.509-SVID has exactly one/);
});

void test('a URI SAN smuggled in a second SAN extension is refused', async () => {
  const dup = await craft(ca, { names: [{ type: 'url', value: AGENT }], secondSan: [{ type: 'url', value: 'spiffe://cluster.local/ns/payments/agent/other' }] });
  refuses(dup, /does not parse/);
});

void test('no URI SAN is refused, DNS SANs alone do not identify an agent', async () => {
  refuses(await craft(ca, { names: [{ type: 'dns', value: 'bot.payments.svc' }] }), /no URI SAN/);
  refuses(await craft(ca, {}), /no URI SAN/);
});

void test('a SPIFFE ID of another trust domain is refused', async () => {
  refuses(await craft(ca, { names: [{ type: 'url', value: 'spiffe://other.local/ns/payments/agent/bot' }] }), /trust domain "other.local", expected "cluster.local"/);
});

void test('non-agent paths are refused, including Mandate server identities', async () => {
  refuses(await craft(ca, { names: [{ type: 'url', value: 'spiffe://cluster.local/ns/mandate/sa/mandate' }] }), /Mandate server, not an agent/);
  refuses(await craft(ca, { names: [{ type: 'url', value: 'spiffe://cluster.local/payments/bot' }] }), /not of the form/);
  refuses(await craft(ca, { names: [{ type: 'url', value: 'spiffe://cluster.local' }] }), /no path/);
  refuses(await craft(ca, { names: [{ type: 'url', value: 'https://cluster.local/ns/a/agent/b' }] }), /scheme/);
  const server = await issueServerCert(ca, { dnsNames: ['localhost'], spiffeId: 'spiffe://cluster.local/ns/mandate/sa/mandate', publicKey: keys.publicKey, ttlSeconds: 3600, now: NOW });
  refuses(Buffer.from(server.cert.rawData), /Mandate server, not an agent/);
  refuses(await craft(ca, { names: [{ type: 'dns', value: 'x' }, { type: 'url', value: AGENT.replace('payments', 'Payments') }] }), /namespace "Payments"/);
});

void test('CA certificates are refused, even with an agent SPIFFE ID', async () => {
  refuses(await craft(ca, { isCA: true, usages: KeyUsageFlags.keyCertSign, names: [{ type: 'url', value: AGENT }] }), /is a CA certificate/);
  refuses(Buffer.from(ca.cert.rawData), /is a CA certificate/);
  refuses(await craft(ca, { usages: KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign, names: [{ type: 'url', value: AGENT }] }), /signing certificates or CRLs/);
  refuses(await craft(ca, { usages: KeyUsageFlags.digitalSignature | KeyUsageFlags.cRLSign, names: [{ type: 'url', value: AGENT }] }), /signing certificates or CRLs/);
});

void test('key usage and EKU must allow a TLS client', async () => {
  refuses(await craft(ca, { usages: null, names: [{ type: 'url', value: AGENT }] }), /no key usage/);
  refuses(await craft(ca, { usages: KeyUsageFlags.keyEncipherment, names: [{ type: 'url', value: AGENT }] }), /lacks digitalSignature/);
  refuses(await craft(ca, { eku: [ExtendedKeyUsage.serverAuth], names: [{ type: 'url', value: AGENT }] }), /lacks clientAuth/);
  const ok = await craft(ca, { eku: [ExtendedKeyUsage.clientAuth], names: [{ type: 'url', value: AGENT }] });
  assert.equal(peerFromCertificate(ok, TD, NOW).name, 'refund-bot');
});

void test('expired and not-yet-valid certificates are refused at `now`, also when cached', () => {
  const auth = createPeerAuthenticator({ trustDomain: TD });
  assert.equal(auth.authenticate(der, NOW).spiffeId, AGENT);
  assert.equal(auth.size, 1);
  const after = new Date(svid.notAfter.getTime() + 1000);
  assert.throws(() => auth.authenticate(der, after), (e) => isMandateError(e, 'PEER_UNAUTHENTICATED') && /expired at/.test(e.message));
  const before = new Date(svid.notBefore.getTime() - 1000);
  assert.throws(() => auth.authenticate(der, before), (e) => isMandateError(e, 'PEER_UNAUTHENTICATED') && /not valid until/.test(e.message));
  // notAfter itself is still inside the validity period (RFC 5280: inclusive).
  assert.equal(auth.authenticate(der, svid.notAfter).spiffeId, AGENT);
});

void test('a certificate that does not parse is refused', () => {
  refuses(Buffer.from('not a certificate'), /does not parse/);
  refuses(der.subarray(0, der.length - 10), /does not parse/);
});

void test('results are cached by DER in a bounded LRU; refusals too', async () => {
  const auth = createPeerAuthenticator({ trustDomain: TD, maxEntries: 2 });
  const a = auth.authenticate(der, NOW);
  assert.equal(auth.authenticate(Buffer.from(der), NOW), a, 'a hit returns the cached identity object');
  assert.equal(auth.size, 1);
  const bad = await craft(ca, { names: [{ type: 'url', value: 'spiffe://other.local/ns/a/agent/b' }] });
  assert.throws(() => auth.authenticate(bad, NOW), /other.local/);
  assert.throws(() => auth.authenticate(bad, NOW), /other.local/);
  assert.equal(auth.size, 2);
  const other = await issueSvid(ca, { spiffeId: 'spiffe://cluster.local/ns/payments/agent/b2', publicKey: keys.publicKey, ttlSeconds: 60, now: NOW });
  auth.authenticate(Buffer.from(other.cert.rawData), NOW);
  assert.equal(auth.size, 2, 'bounded');
  // `der` was the least recently used entry, so adding `other` evicted it.
  const again = auth.authenticate(der, NOW);
  assert.notEqual(again, a, 'evicted entries are parsed again');
  assert.deepEqual({ ...again }, { ...a });
  auth.clear();
  assert.equal(auth.size, 0);
});

void test('a cache is per trust domain: the same SVID is refused for another domain', () => {
  assert.equal(peerFromCertificate(der, TD, NOW).spiffeId, AGENT);
  assert.throws(() => peerFromCertificate(der, 'other.local', NOW), (e) => isMandateError(e, 'PEER_UNAUTHENTICATED'));
  assert.throws(() => createPeerAuthenticator({ trustDomain: 'Not Valid' }), (e) => isMandateError(e, 'CONFIG_INVALID'));
});

void test('analyzePeerCertificate reports the serial the CA reported', () => {
  const a = analyzePeerCertificate(der, TD);
  assert.equal(a.ok, true);
  if (a.ok) {
    assert.equal(a.identity.serial, svid.serial);
    assert.equal(a.notAfter, svid.notAfter.getTime());
  }
});

void test('the DER extension reader sees exactly what the CA wrote', () => {
  const exts = certificateExtensions(der);
  assert.deepEqual(
    exts.map((e) => [e.oid, e.critical]),
    [
      ['551d13', true], // basicConstraints
      ['551d0f', true], // keyUsage
      ['551d25', false], // extKeyUsage
      ['551d0e', false], // subjectKeyIdentifier
      ['551d23', false], // authorityKeyIdentifier
      ['551d11', true], // subjectAltName
    ],
  );
  assert.throws(() => certificateExtensions(Buffer.concat([der, Buffer.from([0])])), /not a certificate/);
  assert.throws(() => readTlv(Buffer.from([0x30, 0x80, 0x00, 0x00]), 0), /indefinite/);
  assert.throws(() => readTlv(Buffer.from([0x30, 0x05, 0x01]), 0), /runs past/);
  assert.throws(() => readTlv(Buffer.from([0x1f, 0x01, 0x00]), 0), /high tag/);
  assert.deepEqual(readTlv(Buffer.from([0x04, 0x81, 0x01, 0xaa]), 0), { tag: 0x04, start: 3, end: 4 });
});
