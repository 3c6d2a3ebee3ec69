// Checks that a signing CA brought in by the user (an intermediate from their PKI or cert-manager)
// chains to a root in the trust bundle. ca.ts signs with any CA certificate and key, but it only
// checks the signature of a self-signed one; for an intermediate, a chain that does not reach a
// trusted root would produce SVIDs no peer accepts, so it is refused here, before anything is issued.
import { isCACertificate } from '../ca.ts';
import { wc } from '../keys.ts';
import { BasicConstraintsExtension, type X509Certificate } from '../x509.ts';

export async function isSelfSigned(cert: X509Certificate): Promise<boolean> {
  if (cert.subject !== cert.issuer) return false;
  try {
    return await cert.verify({ signatureOnly: true }, wc);
  } catch {
    return false;
  }
}

async function signedBy(child: X509Certificate, parent: X509Certificate): Promise<boolean> {
  if (child.issuer !== parent.subject) return false;
  try {
    return await child.verify({ publicKey: parent.publicKey, signatureOnly: true }, wc);
  } catch {
    return false;
  }
}

function describe(cert: X509Certificate): string {
  return cert.subject === '' ? `serial ${cert.serialNumber}` : `"${cert.subject}"`;
}

/** pathLen of a CA: how many CA certificates may sit between it and a leaf. */
function pathLenProblem(ca: X509Certificate, casBelow: number): string | undefined {
  const bc = ca.getExtension(BasicConstraintsExtension);
  if (bc?.pathLength !== undefined && bc.pathLength < casBelow) {
    return `${describe(ca)} allows ${bc.pathLength} CA certificate(s) below it (pathLen) but the chain has ${casBelow}`;
  }
  return undefined;
}

function validityProblem(cert: X509Certificate, now: Date): string | undefined {
  if (now.getTime() >= cert.notAfter.getTime()) return `${describe(cert)} expired at ${cert.notAfter.toISOString()}`;
  if (now.getTime() < cert.notBefore.getTime()) return `${describe(cert)} is not valid until ${cert.notBefore.toISOString()}`;
  return undefined;
}

/**
 * Why `signing` (with the intermediates above it, nearest first) does not chain to one of `roots`,
 * or undefined when it does. A self-signed `signing` certificate is its own root.
 */
export async function issuingChainProblem(
  signing: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  now: Date,
): Promise<string | undefined> {
  if (await isSelfSigned(signing)) {
    return intermediates.length === 0 ? undefined : 'the signing CA is a self-signed root, so no further chain certificates belong with it';
  }
  const path = [signing, ...intermediates];
  for (let k = 1; k < path.length; k++) {
    const child = path[k - 1] as X509Certificate;
    const parent = path[k] as X509Certificate;
    if (!(await signedBy(child, parent))) return `${describe(child)} is not signed by the next chain certificate ${describe(parent)}`;
    if (!isCACertificate(parent)) return `chain certificate ${describe(parent)} is not a CA`;
    const p = validityProblem(parent, now) ?? pathLenProblem(parent, k);
    if (p) return p;
  }
  const top = path[path.length - 1] as X509Certificate;
  if (await isSelfSigned(top)) return `chain certificate ${describe(top)} is a root; put it in the trust bundle, not the chain`;
  for (const root of roots) {
    if (!(await signedBy(top, root))) continue;
    if (!isCACertificate(root)) return `${describe(root)} issued the chain but is not a CA`;
    return validityProblem(root, now) ?? pathLenProblem(root, path.length);
  }
  return `no certificate in the trust bundle issued ${describe(top)} (issuer "${top.issuer}"); add that root to the bundle`;
}
