// Key pairs for SVIDs and the CA: ECDSA P-256 over WebCrypto (native, ~1 ms per key).
import type { webcrypto } from 'node:crypto';
import { MandateError } from '../errors.ts';
import type { X509Certificate } from './x509.ts';

// The lib setting has no DOM, so the WebCrypto types come from node:crypto's namespace.
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The process's WebCrypto implementation (Node's native one), passed explicitly to @peculiar/x509. */
export const wc: webcrypto.Crypto = globalThis.crypto;

export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A fresh P-256 key pair; the private key is extractable so it can be written as PEM. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return wc.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
}

/** The curve of an ECDSA key, or undefined for any other key. */
export function ecdsaCurve(key: CryptoKey): string | undefined {
  const alg = key.algorithm as Partial<webcrypto.EcKeyAlgorithm>;
  return alg.name === 'ECDSA' ? alg.namedCurve : undefined;
}

/**
 * Whether `privateKey` is the key of `cert`: sign a random challenge and verify it with the
 * certificate's public key. Works for non-extractable keys, which a byte comparison would not.
 */
export async function keyMatchesCertificate(privateKey: CryptoKey, cert: X509Certificate): Promise<boolean> {
  const curve = ecdsaCurve(privateKey);
  if (privateKey.type !== 'private' || curve === undefined) throw new MandateError('INTERNAL', 'expected an ECDSA private key');
  const hash = curve === 'P-384' ? 'SHA-384' : 'SHA-256';
  let publicKey: CryptoKey;
  try {
    publicKey = await wc.subtle.importKey('spki', cert.publicKey.rawData, { name: 'ECDSA', namedCurve: curve }, false, ['verify']);
  } catch {
    return false; // not an EC key on the same curve
  }
  const challenge = wc.getRandomValues(new Uint8Array(32));
  const signature = await wc.subtle.sign({ name: 'ECDSA', hash }, privateKey, challenge);
  return wc.subtle.verify({ name: 'ECDSA', hash }, publicKey, signature, challenge);
}
