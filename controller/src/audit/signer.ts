// The key that signs audit checkpoints (segment seals and the head). ECDSA P-256 with SHA-256,
// signatures in IEEE P1363 form (r ‖ s, 64 bytes) as in JWS ES256, base64url-encoded. The private
// key lives in the data folder, apart from the audit segments, so that copying the audit folder
// (to a SIEM bucket, to an auditor) never copies the ability to re-sign it.
import { createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MandateError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { syncDir } from './files.ts';

export interface CheckpointSigner {
  /** First 16 hex digits of SHA-256 over the DER SubjectPublicKeyInfo. */
  readonly keyId: string;
  readonly publicKeyPem: string;
  /** ECDSA P-256/SHA-256 signature over the bytes, base64url (P1363). */
  sign(bytes: Uint8Array): Promise<string>;
}

export const AUDIT_KEY_FILE = 'audit-signing.key';

function signAsync(privateKey: KeyObject, bytes: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    sign('sha256', bytes, { key: privateKey, dsaEncoding: 'ieee-p1363' }, (err, sig) => (err ? reject(err) : resolve(sig)));
  });
}
const generateKeyPairAsync = promisify(generateKeyPair);

export function auditKeyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/** A public key as the verifier uses it. Throws CONFIG_INVALID if the PEM is not a P-256 public key. */
export function importAuditPublicKey(pem: string): { readonly keyId: string; readonly key: KeyObject } {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new MandateError('CONFIG_INVALID', 'audit public key is not a PEM public key', {}, { cause: err });
  }
  if (!isP256(key)) throw new MandateError('CONFIG_INVALID', 'audit public key is not an ECDSA P-256 key');
  return { keyId: auditKeyId(key), key };
}

export function verifyAuditSignature(key: KeyObject, bytes: Uint8Array, signature: string): boolean {
  if (!/^[A-Za-z0-9_-]{86}$/.test(signature)) return false;
  try {
    return verify('sha256', bytes, { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}

function signerFor(privateKey: KeyObject): CheckpointSigner {
  const publicKey = createPublicKey(privateKey);
  return {
    keyId: auditKeyId(publicKey),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    sign: async (bytes) => (await signAsync(privateKey, bytes)).toString('base64url'),
  };
}

async function loadKey(path: string, log: Logger): Promise<CheckpointSigner> {
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) log.warn('audit signing key is readable by group or others', { path, mode: (info.mode & 0o777).toString(8) });
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(path));
  } catch (err) {
    throw new MandateError('CONFIG_INVALID', `audit signing key ${path} is not a PEM private key`, {}, { cause: err });
  }
  if (!isP256(key)) throw new MandateError('CONFIG_INVALID', `audit signing key ${path} is not an ECDSA P-256 key`);
  return signerFor(key);
}

/**
 * Loads `<dataDir>/keys/audit-signing.key`, creating it (0600, folder 0700) on first use. Creation
 * writes a temp file and hard-links it into place, so two processes starting together agree on one
 * key: the loser of the link race loads the winner's key.
 */
export async function loadOrCreateAuditSigner(dataDir: string, log: Logger = silentLogger): Promise<CheckpointSigner> {
  const keysDir = join(dataDir, 'keys');
  const path = join(keysDir, AUDIT_KEY_FILE);
  try {
    return await loadKey(path, log);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
  const tmp = join(keysDir, `.${AUDIT_KEY_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path);
    await syncDir(keysDir);
    log.info('created audit signing key', { path, keyId: signerFor(privateKey).keyId });
    return signerFor(privateKey);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return await loadKey(path, log);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
