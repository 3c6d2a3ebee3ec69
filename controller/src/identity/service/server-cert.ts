// The identity service's own TLS certificate, issued by Mandate's CA so agents verify the service
// with the same trust bundle they verify each other with. Short-lived (a day), renewed in memory
// at half its life or as soon as the CA changes; the key never leaves the process.
import { isIP } from 'node:net';
import { issueServerCert } from '../ca.ts';
import { generateKeyPair } from '../keys.ts';
import { privateKeyToPem } from '../pem.ts';
import type { IssuingCA } from './issuing-ca.ts';

export const SERVER_CERT_TTL_SECONDS = 24 * 3600;

export interface ServerTls {
  /** PEM: the server certificate, then the chain to a trusted root. */
  readonly certPem: string;
  /** PKCS#8 PEM. Never log it. */
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Fingerprint of the CA that signed it. */
  readonly caFingerprint: string;
}

export interface ServerTlsRequest {
  /** DNS names and IP addresses, mixed. */
  readonly names: readonly string[];
  readonly spiffeId?: string;
  readonly ttlSeconds?: number;
  readonly now: Date;
}

/** The names a client inside the cluster may use for Service `service` in `namespace`. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
}

export async function issueServerTls(ca: IssuingCA, req: ServerTlsRequest): Promise<ServerTls> {
  const keys = await generateKeyPair();
  const names = [...new Set(req.names)];
  const issued = await issueServerCert(ca.material, {
    dnsNames: names.filter((n) => isIP(n) === 0),
    ipAddresses: names.filter((n) => isIP(n) !== 0),
    ...(req.spiffeId ? { spiffeId: req.spiffeId } : {}),
    publicKey: keys.publicKey,
    ttlSeconds: req.ttlSeconds ?? SERVER_CERT_TTL_SECONDS,
    now: req.now,
  });
  return {
    certPem: issued.certPem + ca.chainPem,
    keyPem: await privateKeyToPem(keys.privateKey),
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
    caFingerprint: ca.fingerprint,
  };
}

/** Renew at half life, or when another CA signs now (a rotation, or a user-provided CA). */
export function serverTlsNeedsRenewal(tls: ServerTls, ca: IssuingCA | undefined, now: Date): boolean {
  if (ca !== undefined && ca.fingerprint !== tls.caFingerprint) return true;
  const half = tls.notBefore.getTime() + (tls.notAfter.getTime() - tls.notBefore.getTime()) / 2;
  return now.getTime() >= half;
}
