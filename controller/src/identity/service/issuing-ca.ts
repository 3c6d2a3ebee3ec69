// What the identity service signs with: a CA, the chain that leads from it to a trusted root, and
// the bundle of roots. The Secret-backed CA (cluster/cluster-ca.ts) and a CA loaded from files
// (standalone) both provide it, so the service does not care where the CA lives.
import { createHash } from 'node:crypto';
import type { CAMaterial } from '../ca.ts';
import type { X509Certificate } from '../x509.ts';

export interface IssuingCA {
  readonly material: CAMaterial;
  /**
   * PEM certificates to send after a leaf so a peer can reach a root of the bundle: empty for a
   * root CA, the signing intermediate (and any above it) otherwise.
   */
  readonly chainPem: string;
  /** SHA-256 (hex) of the signing certificate: for logs and change detection. */
  readonly fingerprint: string;
}

export interface CASource {
  /** undefined until the CA is loaded. */
  current(): IssuingCA | undefined;
}

export function certFingerprint(cert: X509Certificate): string {
  return createHash('sha256').update(new Uint8Array(cert.rawData)).digest('hex');
}

/** A CA that never changes (standalone mode, tests). */
export function staticCASource(material: CAMaterial, chainPem = ''): CASource {
  const ca: IssuingCA = { material, chainPem, fingerprint: certFingerprint(material.cert) };
  return { current: () => ca };
}
