// `mandate cert issue --identity NS/NAME --out DIR`: a key pair and an SVID on disk, for Envoy
// or any SPIFFE-aware client run outside a Mandate-injected pod. The key never leaves this
// process except into key.pem (0600).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { issueSvid, type CAMaterial } from './ca.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import { generateKeyPair } from './keys.ts';
import { privateKeyToPem } from './pem.ts';

export interface IssueToFolderOptions {
  readonly ca: CAMaterial;
  readonly spiffeId: string;
  readonly ttlSeconds: number;
  readonly outDir: string;
  readonly now: Date;
  readonly dnsNames?: readonly string[];
}

export interface IssuedFiles {
  readonly certPath: string;
  readonly keyPath: string;
  readonly bundlePath: string;
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: Date;
}

export async function issueToFolder(opts: IssueToFolderOptions): Promise<IssuedFiles> {
  const keys = await generateKeyPair();
  const issued = await issueSvid(opts.ca, {
    spiffeId: opts.spiffeId,
    publicKey: keys.publicKey,
    ttlSeconds: opts.ttlSeconds,
    now: opts.now,
    ...(opts.dnsNames ? { dnsNames: opts.dnsNames } : {}),
  });
  const keyPem = await privateKeyToPem(keys.privateKey);
  await mkdir(opts.outDir, { recursive: true, mode: 0o700 });
  const certPath = join(opts.outDir, 'cert.pem');
  const keyPath = join(opts.outDir, 'key.pem');
  const bundlePath = join(opts.outDir, 'bundle.pem');
  // Key first: a watcher that picks up the new cert.pem then finds the matching key already there.
  await writeFileAtomic(keyPath, keyPem, 0o600);
  await writeFileAtomic(certPath, issued.certPem, 0o644);
  await writeFileAtomic(bundlePath, opts.ca.bundlePem, 0o644);
  return { certPath, keyPath, bundlePath, spiffeId: opts.spiffeId, serial: issued.serial, notAfter: issued.notAfter };
}
