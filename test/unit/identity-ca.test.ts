import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate as NodeX509, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMandateError } from '../../controller/src/errors.ts';
import {
  caFromPem,
  createRootCA,
  issueServerCert,
  issueSvid,
  MAX_SVID_TTL_SECONDS,
  normalizeSerial,
  type CAMaterial,
} from '../../controller/src/identity/ca.ts';
import { generateKeyPair, keyMatchesCertificate, wc } from '../../controller/src/identity/keys.ts';
import { certFromPem, certsFromPem, certToPem, privateKeyFromPem, privateKeyToPem } from '../../controller/src/identity/pem.ts';

const TD = 'example.org';
const NOW = new Date('2030-01-15T12:00:00.000Z');
const AGENT = 'spiffe://example.org/ns/payments/agent/refund-bot';
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const ca = await createRootCA({ trustDomain: TD, now: NOW });
const leafKeys = await generateKeyPair();

function node(pem: string): NodeX509 {
  return new NodeX509(pem);
}

function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'mandate-ca-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the real openssl CLI; a missing binary fails the test (spawnSync error), never skips it. */
function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

void test('root CA: self-signed P-256 CA with the constraints the SVID profile asks for', () => {
  const x = node(ca.certPem);
  assert.equal(x.ca, true);
  assert.equal(x.checkIssued(x), true);
  assert.equal(x.verify(x.publicKey), true);
  assert.equal(x.subject, `CN=Mandate CA ${TD}`);
  assert.equal(x.subjectAltName, `URI:spiffe://${TD}`);
  assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(x.validFromDate.getTime(), NOW.getTime() - 60_000);
  assert.equal(x.validToDate.getTime(), NOW.getTime() + 3650 * 86_400_000);
  assert.equal(ca.notAfter.getTime(), x.validToDate.getTime());
  assert.equal(ca.bundlePem, ca.certPem);

  const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: ca.certPem, encoding: 'utf8' });
  assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
  assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  assert.match(text, /Subject Key Identifier/);
  assert.match(text, /Name Constraints: critical\s+Permitted:\s+URI:example\.org/);
});

void test('root CA: private key PEM is PKCS#8 and belongs to the certificate', async () => {
  assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const keyObject = createPrivateKey(ca.keyPem);
  assert.equal(node(ca.certPem).checkPrivateKey(keyObject), true);
  assert.equal(await keyMatchesCertificate(ca.privateKey, ca.cert), true);
  const other = await createRootCA({ trustDomain: TD, now: NOW });
  assert.equal(await keyMatchesCertificate(other.privateKey, ca.cert), false);
});

void test('root CA: invalid trust domain or lifetime is a config error', async () => {
  await assert.rejects(createRootCA({ trustDomain: 'Bad.Domain', now: NOW }), (e) => isMandateError(e, 'CONFIG_INVALID'));
  await assert.rejects(createRootCA({ trustDomain: TD, now: NOW, ttlDays: 0 }), (e) => isMandateError(e, 'CONFIG_INVALID'));
  await assert.rejects(createRootCA({ trustDomain: TD, now: NOW, ttlDays: 1.5 }), (e) => isMandateError(e, 'CONFIG_INVALID'));
});

void test('SVID: one URI SAN, cA=false, digitalSignature, both EKUs, issued and signed by the CA', async () => {
  const svid = await issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 3600, now: NOW });
  const x = node(svid.certPem);
  const caX = node(ca.certPem);
  assert.equal(x.checkIssued(caX), true);
  assert.equal(x.verify(caX.publicKey), true);
  assert.equal(x.ca, false);
  assert.equal(x.subjectAltName, `URI:${AGENT}`);
  assert.equal(x.subject, undefined, 'the SVID subject is empty');
  assert.deepEqual([...(x.keyUsage ?? [])].sort(), [OID_SERVER_AUTH, OID_CLIENT_AUTH].sort());
  assert.equal(x.validFromDate.getTime(), NOW.getTime() - 60_000);
  assert.equal(x.validToDate.getTime(), NOW.getTime() + 3600_000);
  assert.equal(svid.notAfter.getTime(), x.validToDate.getTime());
  assert.equal(svid.serial, x.serialNumber.toLowerCase().replace(/^(00)+/, ''));
  assert.equal(svid.spiffeId, AGENT);
  const spki = await wc.subtle.exportKey('spki', leafKeys.publicKey);
  assert.deepEqual(x.publicKey.export({ format: 'der', type: 'spki' }), Buffer.from(spki));
});

void test('SVID: openssl verify and x509 -text', async () => {
  // openssl checks validity against the real clock, so issue for now.
  const live = await createRootCA({ trustDomain: TD, now: new Date() });
  const svid = await issueSvid(live, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 600, now: new Date() });
  withTempDir((dir) => {
    writeFileSync(join(dir, 'bundle.pem'), live.bundlePem);
    writeFileSync(join(dir, 'cert.pem'), svid.certPem);
    const v = openssl(['verify', '-CAfile', join(dir, 'bundle.pem'), join(dir, 'cert.pem')]);
    assert.equal(v.status, 0, v.out);
    assert.match(v.out, /cert\.pem: OK/);
    const v2 = openssl(['verify', '-purpose', 'sslclient', '-CAfile', join(dir, 'bundle.pem'), join(dir, 'cert.pem')]);
    assert.equal(v2.status, 0, v2.out);
    const text = openssl(['x509', '-noout', '-text', '-in', join(dir, 'cert.pem')]).out;
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(text, /Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text, /Subject Alternative Name: critical\s+URI:spiffe:\/\/example\.org\/ns\/payments\/agent\/refund-bot\n/);
    assert.match(text, /Authority Key Identifier/);
    assert.match(text, /Subject Key Identifier/);
    assert.match(text, /Subject: *\n/);
  });
});

void test('SVID: a certificate for another trust domain, even signed by this CA, fails the name constraint', async () => {
  const live = await createRootCA({ trustDomain: TD, now: new Date() });
  // Pretend the CA belonged to evil.org to get past issueSvid's own check: only the signature is real.
  const forged = await issueSvid({ ...live, trustDomain: 'evil.org' }, {
    spiffeId: 'spiffe://evil.org/ns/a/agent/b',
    publicKey: leafKeys.publicKey,
    ttlSeconds: 600,
    now: new Date(),
  });
  withTempDir((dir) => {
    writeFileSync(join(dir, 'bundle.pem'), live.bundlePem);
    writeFileSync(join(dir, 'cert.pem'), forged.certPem);
    const v = openssl(['verify', '-CAfile', join(dir, 'bundle.pem'), join(dir, 'cert.pem')]);
    assert.notEqual(v.status, 0);
    assert.match(v.out, /permitted subtree violation/);
  });
});

void test('SVID: serials are random, positive and at most 128 bits', async () => {
  const serials = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const s = await issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: NOW });
    assert.match(s.serial, /^[0-9a-f]+$/);
    assert.ok(s.serial.length <= 32 && s.serial.length >= 16, s.serial);
    assert.notEqual(BigInt('0x' + s.serial), 0n);
    serials.add(s.serial);
  }
  assert.equal(serials.size, 40);
  assert.equal(normalizeSerial('00FF10'), 'ff10');
  assert.equal(normalizeSerial('0a'), '0a');
});

void test('SVID: TTL is clamped to the CA lifetime', async () => {
  const shortCa = await createRootCA({ trustDomain: TD, now: NOW, ttlDays: 1 });
  const late = new Date(shortCa.notAfter.getTime() - 1800_000);
  const s = await issueSvid(shortCa, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 3600, now: late });
  assert.equal(s.notAfter.getTime(), shortCa.notAfter.getTime());
});

void test('SVID: TTL must be whole seconds in (0, 24 h]', async () => {
  for (const ttl of [0, -1, MAX_SVID_TTL_SECONDS + 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await assert.rejects(
      issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: ttl, now: NOW }),
      (e) => isMandateError(e, 'CERT_REQUEST_INVALID'),
      String(ttl),
    );
  }
  const max = await issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: MAX_SVID_TTL_SECONDS, now: NOW });
  assert.equal(max.notAfter.getTime(), NOW.getTime() + MAX_SVID_TTL_SECONDS * 1000);
});

void test('SVID: only agent and server IDs of the CA trust domain are issued', async () => {
  const refused: Array<[string, RegExp]> = [
    ['spiffe://other.org/ns/payments/agent/bot', /trust domain "other.org"/],
    ['spiffe://example.org', /no path/],
    ['spiffe://example.org/payments/bot', /not of the form/],
    ['spiffe://example.org/ns/payments/agent/bot/x', /not of the form/],
    ['https://example.org/ns/payments/agent/bot', /scheme/],
  ];
  for (const [spiffeId, reason] of refused) {
    await assert.rejects(
      issueSvid(ca, { spiffeId, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: NOW }),
      (e) => isMandateError(e, 'CERT_REQUEST_INVALID') && reason.test(e.message),
      spiffeId,
    );
  }
  const server = await issueSvid(ca, { spiffeId: 'spiffe://example.org/ns/mandate/sa/mandate', publicKey: leafKeys.publicKey, ttlSeconds: 60, now: NOW });
  assert.equal(node(server.certPem).subjectAltName, 'URI:spiffe://example.org/ns/mandate/sa/mandate');
});

void test('SVID: extra DNS SANs are allowed, still exactly one URI SAN', async () => {
  const s = await issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: NOW, dnsNames: ['Bot.Payments.svc', 'bot.payments.svc'] });
  assert.equal(node(s.certPem).subjectAltName, `URI:${AGENT}, DNS:bot.payments.svc`);
  await assert.rejects(
    issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: NOW, dnsNames: ['*.payments.svc'] }),
    (e) => isMandateError(e, 'CERT_REQUEST_INVALID'),
  );
});

void test('SVID: the subject key must be a public ECDSA P-256/P-384 key', async () => {
  await assert.rejects(
    issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.privateKey, ttlSeconds: 60, now: NOW }),
    (e) => isMandateError(e, 'CERT_REQUEST_INVALID') && /public key/.test(e.message),
  );
  const rsa = await wc.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
  await assert.rejects(
    issueSvid(ca, { spiffeId: AGENT, publicKey: rsa.publicKey, ttlSeconds: 60, now: NOW }),
    (e) => isMandateError(e, 'CERT_REQUEST_INVALID') && /ECDSA/.test(e.message),
  );
  const p384 = await wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
  const s = await issueSvid(ca, { spiffeId: AGENT, publicKey: p384.publicKey, ttlSeconds: 60, now: NOW });
  assert.equal(node(s.certPem).publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
});

void test('SVID: an expired or not-yet-valid CA signs nothing', async () => {
  const after = new Date(ca.notAfter.getTime() + 1000);
  await assert.rejects(
    issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: after }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /expired/.test(e.message),
  );
  const before = new Date(NOW.getTime() - 86_400_000);
  await assert.rejects(
    issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: before }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /not valid until/.test(e.message),
  );
});

void test('server certificate: DNS, IP and server SPIFFE ID SANs, serverAuth+clientAuth', async () => {
  const s = await issueServerCert(ca, {
    dnsNames: ['localhost', 'mandate.mandate.svc'],
    ipAddresses: ['127.0.0.1', '::1'],
    spiffeId: 'spiffe://example.org/ns/mandate/sa/mandate',
    publicKey: leafKeys.publicKey,
    ttlSeconds: 7 * 86_400,
    now: NOW,
  });
  const x = node(s.certPem);
  assert.equal(x.checkIssued(node(ca.certPem)), true);
  assert.equal(x.ca, false);
  assert.equal(x.subject, 'CN=localhost');
  assert.equal(
    x.subjectAltName,
    'DNS:localhost, DNS:mandate.mandate.svc, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://example.org/ns/mandate/sa/mandate',
  );
  assert.deepEqual([...(x.keyUsage ?? [])].sort(), [OID_SERVER_AUTH, OID_CLIENT_AUTH].sort());
  assert.equal(x.checkHost('localhost'), 'localhost');
  assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
});

void test('server certificate: refuses agent IDs, bad names and missing names', async () => {
  const base = { publicKey: leafKeys.publicKey, ttlSeconds: 3600, now: NOW };
  await assert.rejects(issueServerCert(ca, { ...base, spiffeId: AGENT }), (e) => isMandateError(e, 'CERT_REQUEST_INVALID') && /agent/.test(e.message));
  await assert.rejects(issueServerCert(ca, { ...base, ipAddresses: ['300.1.1.1'] }), (e) => isMandateError(e, 'CERT_REQUEST_INVALID'));
  await assert.rejects(issueServerCert(ca, { ...base, dnsNames: ['-bad-.example'] }), (e) => isMandateError(e, 'CERT_REQUEST_INVALID'));
  await assert.rejects(issueServerCert(ca, { ...base }), (e) => isMandateError(e, 'CERT_REQUEST_INVALID') && /at least one name/.test(e.message));
  await assert.rejects(issueServerCert(ca, { ...base, dnsNames: ['localhost'], ttlSeconds: 91 * 86_400 }), (e) => isMandateError(e, 'CERT_REQUEST_INVALID'));
  const ipOnly = await issueServerCert(ca, { ...base, ipAddresses: ['10.0.0.1'] });
  assert.equal(node(ipOnly.certPem).subject, undefined);
  assert.match(execFileSync('openssl', ['x509', '-noout', '-text'], { input: ipOnly.certPem, encoding: 'utf8' }), /Subject Alternative Name: critical/);
});

void test('PEM: certificates and keys round-trip; SEC1 keys are accepted', async () => {
  assert.equal(certToPem(certFromPem(ca.certPem)), ca.certPem);
  assert.equal(certsFromPem(ca.certPem + ca.certPem).length, 2);
  const key = await privateKeyFromPem(ca.keyPem, { extractable: true });
  assert.equal(await privateKeyToPem(key), ca.keyPem);
  assert.equal(await keyMatchesCertificate(key, ca.cert), true);

  const sec1 = createPrivateKey(ca.keyPem).export({ format: 'pem', type: 'sec1' }) as string;
  assert.match(sec1, /BEGIN EC PRIVATE KEY/);
  assert.equal(await keyMatchesCertificate(await privateKeyFromPem(sec1), ca.cert), true);
  const fromOpenssl = execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey'], { encoding: 'utf8' });
  assert.equal((await privateKeyFromPem(fromOpenssl)).type, 'private');
});

void test('PEM: damaged or unexpected input is refused with a reason', async () => {
  assert.throws(() => certFromPem('garbage'), (e) => isMandateError(e, 'CERT_REQUEST_INVALID') && /outside/.test(e.message));
  assert.throws(() => certFromPem(''), /no PEM certificate/);
  assert.throws(() => certFromPem(ca.certPem + ca.certPem), /expected one certificate, found 2/);
  assert.throws(() => certFromPem(ca.certPem.replace('MII', 'MIX')), /does not parse/);
  assert.throws(() => certsFromPem(ca.keyPem), /expected CERTIFICATE blocks/);
  assert.throws(() => certFromPem('hello\n' + ca.certPem), /outside/);
  assert.throws(() => certFromPem(ca.certPem.replace(/\n([A-Za-z0-9+/]{10})/, '\n$1!')), /outside|base64/);
  await assert.rejects(privateKeyFromPem(ca.certPem), /"PRIVATE KEY"/);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  await assert.rejects(privateKeyFromPem(rsa), /not an ECDSA P-256 or P-384 key/);
  const encrypted = createPrivateKey(ca.keyPem).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'x' }) as string;
  await assert.rejects(privateKeyFromPem(encrypted), /encrypted/);
  await assert.rejects(privateKeyFromPem(ca.keyPem.replace('MI', 'AA')), /does not parse/);
});

void test('caFromPem: accepts good material, names the part at fault otherwise', async () => {
  const ok = await caFromPem({ certPem: ca.certPem, keyPem: ca.keyPem, trustDomain: TD, now: NOW });
  assert.equal(ok.material.certPem, ca.certPem);
  assert.deepEqual(ok.warnings, []);
  assert.equal(ok.material.notAfter.getTime(), ca.notAfter.getTime());

  const other: CAMaterial = await createRootCA({ trustDomain: TD, now: NOW });
  await assert.rejects(
    caFromPem({ certPem: ca.certPem, keyPem: other.keyPem, trustDomain: TD, now: NOW, labels: { key: '/x/ca.key' } }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && e.message.startsWith('/x/ca.key: private key does not belong'),
  );
  await assert.rejects(
    caFromPem({ certPem: ca.certPem, keyPem: ca.keyPem, trustDomain: 'other.org', now: NOW }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /trust domain "example.org" but Mandate is configured for "other.org"/.test(e.message),
  );
  const leaf = await issueSvid(ca, { spiffeId: AGENT, publicKey: leafKeys.publicKey, ttlSeconds: 60, now: NOW });
  await assert.rejects(
    caFromPem({ certPem: leaf.certPem, keyPem: ca.keyPem, trustDomain: TD, now: NOW }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /not a CA/.test(e.message),
  );
  await assert.rejects(
    caFromPem({ certPem: ca.certPem, keyPem: ca.keyPem, trustDomain: TD, now: new Date(ca.notAfter.getTime() + 1) }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /expired/.test(e.message),
  );
  const soon = await caFromPem({ certPem: ca.certPem, keyPem: ca.keyPem, trustDomain: TD, now: new Date(ca.notAfter.getTime() - 10 * 86_400_000) });
  assert.match(soon.warnings.join('\n'), /expires in 10 days/);

  const bundled = await caFromPem({ certPem: ca.certPem, keyPem: ca.keyPem, bundlePem: other.certPem, trustDomain: TD, now: NOW });
  assert.equal(bundled.bundleChanged, true);
  assert.equal(certsFromPem(bundled.material.bundlePem).length, 2);
  assert.equal(certsFromPem(bundled.material.bundlePem)[0]?.toString('pem').trim(), ca.certPem.trim());
  await assert.rejects(
    caFromPem({ certPem: ca.certPem, keyPem: ca.keyPem, bundlePem: leaf.certPem, trustDomain: TD, now: NOW }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /trust bundle: contains a certificate that is not a CA/.test(e.message),
  );
});
