// Throwaway PKI for one test control plane: a CA for the API server's serving certificate (what
// clients trust), a separate CA for client certificates (what the API server trusts; the subject's
// CN is the user and each O a group), and the ServiceAccount token signing key pair. Nothing here is
// Mandate's own CA code: the harness must not depend on the code it tests.
import { generateKeyPair as nodeGenerateKeyPair, KeyObject, randomBytes, type webcrypto } from 'node:crypto';
import { promisify } from 'node:util';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  AuthorityKeyIdentifierExtension,
  X509CertificateGenerator,
  type JsonName,
  type X509Certificate,
} from '../../../controller/src/identity/x509.ts';

const wc: webcrypto.Crypto = globalThis.crypto;
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;
const HOUR_MS = 3600_000;
// Long enough for any test run, short enough that a leaked key is worthless soon.
const validityMs = 7 * 24 * HOUR_MS;

export interface CertificateAuthority {
  readonly certPem: string;
  readonly cert: X509Certificate;
  readonly privateKey: webcrypto.CryptoKey;
}

export interface KeyedCert {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface LeafRequest {
  readonly commonName: string;
  /** Subject O attributes: Kubernetes reads them as the user's groups. */
  readonly organizations?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly usage: 'server' | 'client';
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive
  return bytes.toString('hex');
}

function toPem(label: string, der: Buffer | ArrayBuffer): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

function privateKeyPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

function subject(commonName: string, organizations: readonly string[] = []): JsonName {
  // The structured form needs no escaping, whatever characters a test's group names contain.
  return [...organizations.map((o) => ({ O: [o] })), { CN: [commonName] }];
}

export async function createCertificateAuthority(commonName: string): Promise<CertificateAuthority> {
  const keys = await wc.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: subject(commonName),
      keys,
      signingAlgorithm: ECDSA_SHA256,
      notBefore: new Date(now - HOUR_MS),
      notAfter: new Date(now + validityMs),
      extensions: [
        new BasicConstraintsExtension(true, 0, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, wc),
      ],
    },
    wc,
  );
  return { certPem: toPem('CERTIFICATE', cert.rawData), cert, privateKey: keys.privateKey };
}

export async function issueCertificate(ca: CertificateAuthority, req: LeafRequest): Promise<KeyedCert> {
  const keys = await wc.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = Date.now();
  const sans = [...(req.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })), ...(req.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value }))];
  const cert = await X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: subject(req.commonName, req.organizations),
      issuer: ca.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: ca.privateKey,
      signingAlgorithm: ECDSA_SHA256,
      notBefore: new Date(now - HOUR_MS),
      notAfter: new Date(now + validityMs),
      extensions: [
        new BasicConstraintsExtension(false, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment, true),
        new ExtendedKeyUsageExtension([req.usage === 'server' ? ExtendedKeyUsage.serverAuth : ExtendedKeyUsage.clientAuth], false),
        await AuthorityKeyIdentifierExtension.create(ca.cert, false, wc),
        ...(sans.length > 0 ? [new SubjectAlternativeNameExtension(sans, false)] : []),
      ],
    },
    wc,
  );
  return { certPem: toPem('CERTIFICATE', cert.rawData), keyPem: privateKeyPem(keys.privateKey) };
}

export interface ServiceAccountKeys {
  /** PKCS#8 private key for --service-account-signing-key-file. */
  readonly privateKeyPem: string;
  /** SPKI public key for --service-account-key-file. */
  readonly publicKeyPem: string;
}

/** RSA 2048, so tokens are RS256 as in a default cluster. */
export async function createServiceAccountKeys(): Promise<ServiceAccountKeys> {
  const { privateKey, publicKey } = await promisify(nodeGenerateKeyPair)('rsa', { modulusLength: 2048 });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
