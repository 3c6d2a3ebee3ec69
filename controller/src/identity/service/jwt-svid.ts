// JWT-SVIDs (ES256 via jose) and the OIDC discovery document that lets clouds and other services
// federate with Mandate as an issuer. Claims: iss, sub (the SPIFFE ID), exactly one aud, iat,
// exp (at most 15 minutes, at most the identity's tokenTTL, never past its expiresAt), jti, and
// agent ("<namespace>/<name>" of the AgentIdentity), version (when set), instance (the pod UID).
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { MandateError } from '../../errors.ts';
import { parseDuration } from '../../duration.ts';
import { JWT_ALG, type SigningKey } from '../cluster/jwt-keyset.ts';
import type { Attestation } from './attest.ts';

export const MAX_JWT_SVID_TTL_SECONDS = 15 * 60;
/** The CRD's default tokenTTL, for identities read without API server defaulting (files). */
export const DEFAULT_JWT_SVID_TTL_SECONDS = 5 * 60;
export const MAX_AUDIENCE_LENGTH = 512;

export interface JwtSvid {
  readonly token: string;
  readonly jti: string;
  readonly expiresAt: Date;
}

export interface JwtSvidRequest {
  readonly attestation: Attestation;
  readonly audience: unknown;
  readonly issuer: string;
  readonly key: SigningKey;
  readonly now: Date;
}

function refuse(message: string): MandateError {
  return new MandateError('CERT_REQUEST_INVALID', message);
}

/** One audience: a non-empty string without control characters. */
export function checkAudience(audience: unknown): string {
  if (Array.isArray(audience)) throw refuse('"audience" must be one string; a JWT-SVID carries exactly one audience');
  if (typeof audience !== 'string' || audience.trim() === '') throw refuse('"audience" must be a non-empty string');
  if (audience.length > MAX_AUDIENCE_LENGTH) throw refuse(`"audience" is longer than ${MAX_AUDIENCE_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(audience)) throw refuse('"audience" contains control characters');
  return audience;
}

/** Lifetime in seconds: min(15 min, tokenTTL, time until expiresAt). */
export function jwtSvidTtlSeconds(attestation: Attestation, now: Date): number {
  const { identity } = attestation;
  let ttl = DEFAULT_JWT_SVID_TTL_SECONDS;
  if (identity.spec.tokenTTL !== undefined) {
    const ms = parseDuration(identity.spec.tokenTTL);
    if (ms === undefined || ms < 1000) throw refuse(`AgentIdentity ${attestation.namespace}/${attestation.identityName} has an unreadable tokenTTL "${identity.spec.tokenTTL}"`);
    ttl = Math.floor(ms / 1000);
  }
  ttl = Math.min(ttl, MAX_JWT_SVID_TTL_SECONDS);
  if (identity.spec.expiresAt !== undefined) {
    const left = Math.floor((Date.parse(identity.spec.expiresAt) - now.getTime()) / 1000);
    if (!(left >= 1)) throw new MandateError('IDENTITY_SUSPENDED', `AgentIdentity ${attestation.namespace}/${attestation.identityName} has expired`);
    ttl = Math.min(ttl, left);
  }
  return ttl;
}

export async function mintJwtSvid(req: JwtSvidRequest): Promise<JwtSvid> {
  const audience = checkAudience(req.audience);
  const ttl = jwtSvidTtlSeconds(req.attestation, req.now);
  const iat = Math.floor(req.now.getTime() / 1000);
  const exp = iat + ttl;
  const jti = randomUUID();
  const { identity } = req.attestation;
  const token = await new SignJWT({
    agent: `${req.attestation.namespace}/${req.attestation.identityName}`,
    ...(identity.spec.version ? { version: identity.spec.version } : {}),
    instance: req.attestation.pod.uid,
  })
    .setProtectedHeader({ alg: JWT_ALG, kid: req.key.kid, typ: 'JWT' })
    .setIssuer(req.issuer)
    .setSubject(req.attestation.spiffeId)
    .setAudience(audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(req.key.privateKey);
  return { token, jti, expiresAt: new Date(exp * 1000) };
}

/** OpenID Provider metadata (only what a relying party needs to verify Mandate's tokens). */
export function discoveryDocument(issuer: string): Record<string, unknown> {
  const base = issuer.replace(/\/+$/, '');
  return {
    issuer,
    jwks_uri: `${base}/keys`,
    id_token_signing_alg_values_supported: [JWT_ALG],
    subject_types_supported: ['public'],
    response_types_supported: ['id_token'],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'agent', 'version', 'instance'],
  };
}
