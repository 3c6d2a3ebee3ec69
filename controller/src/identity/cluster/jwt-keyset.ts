// The JWT-SVID signing keys as plain data: ES256 (P-256) keys, newest first, the newest signs and
// the one before it stays published so tokens it signed keep verifying after a rotation. A key's
// `kid` is its RFC 7638 thumbprint, so a verifier (or a human) can recompute it from the JWKS,
// and a stored kid that does not match its key is refused as tampering. Stored in the Secret as
// one JSON document, `keys.json`: { keys: [{ kid, createdAt, jwk (private) }] }.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK } from 'jose';
import { MandateError } from '../../errors.ts';
import type { CryptoKey } from '../keys.ts';

export const JWT_KEYS_SECRET_NAME = 'mandate-jwt-keys';
export const JWT_KEYS_SECRET_KEY = 'keys.json';
/** A new signing key every day; the previous one stays in the JWKS until the next rotation. */
export const JWT_KEY_ROTATION_MS = 24 * 3600 * 1000;
/** Current and previous. */
export const JWT_KEYS_RETAINED = 2;
export const JWT_ALG = 'ES256';

export interface SigningKey {
  readonly kid: string;
  readonly createdAt: Date;
  readonly privateKey: CryptoKey;
  /** Public JWK with kid, alg and use, as the JWKS serves it. */
  readonly publicJwk: JWK;
  /** Private JWK for storage. Never log it. */
  readonly privateJwk: JWK;
}

export interface JwtKeySet {
  /** Newest first; keys[0] signs. Never empty. */
  readonly keys: readonly SigningKey[];
}

function invalid(where: string, message: string): MandateError {
  return new MandateError('NOT_READY', `${where}: ${message}`);
}

function publicPart(jwk: JWK, kid: string): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid, alg: JWT_ALG, use: 'sig' };
}

async function toSigningKey(privateJwk: JWK, createdAt: Date): Promise<SigningKey> {
  const kid = await calculateJwkThumbprint({ kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x, y: privateJwk.y }, 'sha256');
  const privateKey = (await importJWK({ ...privateJwk, ext: false }, JWT_ALG, { extractable: false })) as CryptoKey;
  return { kid, createdAt, privateKey, publicJwk: publicPart(privateJwk, kid), privateJwk };
}

export async function newSigningKey(now: Date): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair(JWT_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return toSigningKey({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d }, now);
}

export async function newKeySet(now: Date): Promise<JwtKeySet> {
  return { keys: [await newSigningKey(now)] };
}

export function serializeKeySet(set: JwtKeySet): string {
  return JSON.stringify({ keys: set.keys.map((k) => ({ kid: k.kid, createdAt: k.createdAt.toISOString(), jwk: k.privateJwk })) }, null, 2) + '\n';
}

/** Parses `keys.json`; `where` names the Secret in errors. Keys come back newest first. */
export async function parseKeySet(text: string, where: string): Promise<JwtKeySet> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalid(where, `${JWT_KEYS_SECRET_KEY} is not JSON`);
  }
  const entries = doc && typeof doc === 'object' ? (doc as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(entries) || entries.length === 0) throw invalid(where, `${JWT_KEYS_SECRET_KEY} holds no keys`);
  const keys: SigningKey[] = [];
  for (const [i, e] of entries.entries()) {
    const entry = (e ?? {}) as { kid?: unknown; createdAt?: unknown; jwk?: unknown };
    const jwk = (entry.jwk ?? {}) as JWK;
    const at = `key ${i}`;
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string' || typeof jwk.d !== 'string') {
      throw invalid(where, `${at} is not an EC P-256 private JWK`);
    }
    const createdAt = typeof entry.createdAt === 'string' ? new Date(entry.createdAt) : new Date(NaN);
    if (Number.isNaN(createdAt.getTime())) throw invalid(where, `${at} has no valid createdAt`);
    let key: SigningKey;
    try {
      key = await toSigningKey({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d }, createdAt);
    } catch {
      // The library's message could quote key material; say only what is wrong.
      throw invalid(where, `${at} does not import as an ES256 key`);
    }
    if (entry.kid !== key.kid) throw invalid(where, `${at} has kid "${String(entry.kid)}" but its thumbprint is "${key.kid}"`);
    if (keys.some((k) => k.kid === key.kid)) throw invalid(where, `${at} repeats kid "${key.kid}"`);
    keys.push(key);
  }
  keys.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  return { keys };
}

/** The set after a rotation: `key` signs, the previous current key stays published, older ones go. */
export function rotateKeySet(set: JwtKeySet, key: SigningKey): JwtKeySet {
  return { keys: [key, ...set.keys.filter((k) => k.kid !== key.kid)].slice(0, JWT_KEYS_RETAINED) };
}

export function needsRotation(set: JwtKeySet, now: Date, periodMs = JWT_KEY_ROTATION_MS): boolean {
  const current = set.keys[0];
  return current === undefined || now.getTime() - current.createdAt.getTime() >= periodMs;
}

/** Public keys for verifiers: the current one and the one before it. */
export function jwksOf(set: JwtKeySet): JSONWebKeySet {
  return { keys: set.keys.slice(0, JWT_KEYS_RETAINED).map((k) => ({ ...k.publicJwk })) };
}
