// PEM in and out for certificates and keys. Parsing is strict on purpose: our own files contain
// nothing but PEM blocks, so any other text means the file was damaged or is not what its name
// says, and the caller should say which file rather than guess.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { MandateError, type ErrorCode } from '../errors.ts';
import { wc, type CryptoKey } from './keys.ts';
import { X509Certificate } from './x509.ts';

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Splits PEM text into blocks; throws (with `code`) on anything but whitespace between them. */
export function parsePemBlocks(text: string, code: ErrorCode = 'CERT_REQUEST_INVALID'): PemBlock[] {
  const blocks: PemBlock[] = [];
  let last = 0;
  for (const m of text.matchAll(BLOCK)) {
    if (text.slice(last, m.index).trim() !== '') throw new MandateError(code, 'PEM contains text outside BEGIN/END blocks');
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (body.length === 0 || body.length % 4 !== 0 || !BASE64.test(body)) {
      throw new MandateError(code, `PEM block "${m[1] ?? ''}" is not valid base64`);
    }
    blocks.push({ label: m[1] ?? '', der: Buffer.from(body, 'base64') });
    last = m.index + m[0].length;
  }
  if (text.slice(last).trim() !== '') throw new MandateError(code, 'PEM contains text outside BEGIN/END blocks');
  return blocks;
}

export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function certToPem(cert: X509Certificate | ArrayBuffer | Uint8Array): string {
  return toPem('CERTIFICATE', cert instanceof X509Certificate ? cert.rawData : cert);
}

function parseCertDer(der: Buffer, code: ErrorCode): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw new MandateError(code, `certificate does not parse: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** All certificates of a PEM bundle (at least one); other block types are refused. */
export function certsFromPem(pem: string, code: ErrorCode = 'CERT_REQUEST_INVALID'): X509Certificate[] {
  const blocks = parsePemBlocks(pem, code);
  if (blocks.length === 0) throw new MandateError(code, 'no PEM certificate found');
  return blocks.map((b) => {
    if (b.label !== 'CERTIFICATE') throw new MandateError(code, `expected CERTIFICATE blocks, found "${b.label}"`);
    return parseCertDer(b.der, code);
  });
}

/** Exactly one certificate. */
export function certFromPem(pem: string, code: ErrorCode = 'CERT_REQUEST_INVALID'): X509Certificate {
  const certs = certsFromPem(pem, code);
  if (certs.length !== 1) throw new MandateError(code, `expected one certificate, found ${certs.length}`);
  return certs[0] as X509Certificate;
}

/** PKCS#8 "PRIVATE KEY" PEM. The key must be extractable. */
export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  if (key.type !== 'private') throw new MandateError('INTERNAL', 'privateKeyToPem needs a private key');
  return toPem('PRIVATE KEY', await wc.subtle.exportKey('pkcs8', key));
}

export async function publicKeyToPem(key: CryptoKey): Promise<string> {
  if (key.type !== 'public') throw new MandateError('INTERNAL', 'publicKeyToPem needs a public key');
  return toPem('PUBLIC KEY', await wc.subtle.exportKey('spki', key));
}

const CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384' };

/** The WebCrypto curve name of an EC KeyObject, or undefined for anything else. */
function ecCurve(key: KeyObject): string | undefined {
  if (key.asymmetricKeyType !== 'ec') return undefined;
  const named = key.asymmetricKeyDetails?.namedCurve;
  return named === undefined ? undefined : CURVES[named];
}

/**
 * An ECDSA (P-256 or P-384) private key from PEM: PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY"
 * (what `openssl ecparam -genkey` writes), so a key made by hand can be brought in.
 */
export async function privateKeyFromPem(pem: string, options: { extractable?: boolean; code?: ErrorCode } = {}): Promise<CryptoKey> {
  const code = options.code ?? 'CERT_REQUEST_INVALID';
  const blocks = parsePemBlocks(pem, code);
  const keyBlocks = blocks.filter((b) => b.label !== 'EC PARAMETERS');
  if (keyBlocks.length !== 1) throw new MandateError(code, `expected one private key, found ${keyBlocks.length} PEM blocks`);
  const block = keyBlocks[0] as PemBlock;
  if (block.label === 'ENCRYPTED PRIVATE KEY') throw new MandateError(code, 'private key is encrypted; Mandate needs an unencrypted key');
  if (block.label !== 'PRIVATE KEY' && block.label !== 'EC PRIVATE KEY') {
    throw new MandateError(code, `expected a "PRIVATE KEY" or "EC PRIVATE KEY" block, found "${block.label}"`);
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: block.der, format: 'der', type: block.label === 'PRIVATE KEY' ? 'pkcs8' : 'sec1' });
  } catch {
    // The library message can quote key bytes; say only what is wrong.
    throw new MandateError(code, 'private key does not parse');
  }
  const namedCurve = ecCurve(keyObject);
  if (!namedCurve) throw new MandateError(code, 'private key is not an ECDSA P-256 or P-384 key');
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  return wc.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve }, options.extractable ?? false, ['sign']);
}
