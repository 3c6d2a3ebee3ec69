// The identity service without its transport: attested requests in, SVIDs and JWT-SVIDs out.
// server.ts puts it behind HTTPS. Order of work in a request: is this replica ready (CA, keys,
// identities)? → attest the token → check the body → sign. Readiness is checked first so a
// replica that cannot issue does not spend a TokenReview finding that out.
import type { JSONWebKeySet } from 'jose';
import { MandateError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import type { Snapshot } from '../../store/snapshot.ts';
import type { JwtSignerSource } from '../cluster/jwt-keys.ts';
import { attest, type Attestation, type AttestationPorts } from './attest.ts';
import { signCsr } from './csr.ts';
import type { CASource, IssuingCA } from './issuing-ca.ts';
import { discoveryDocument, mintJwtSvid } from './jwt-svid.ts';

export interface IdentityServiceOptions {
  readonly trustDomain: string;
  /** Audience the projected ServiceAccount tokens must carry (config identityService.tokenAudience). */
  readonly tokenAudience: string;
  /** `iss` of JWT-SVIDs (config identityService.jwtIssuer). */
  readonly issuer: string;
  /** config identity.certTTLSeconds: SVID lifetime for identities that name none. */
  readonly defaultCertTtlSeconds: number;
  readonly ca: CASource;
  readonly jwtKeys: JwtSignerSource;
  readonly attestation: AttestationPorts;
  readonly snapshot: () => Snapshot | undefined;
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly clock?: () => Date;
  /** Told of every X.509-SVID issued (for Kubernetes Events); must not throw. */
  readonly onIssued?: (issued: IssuedSvid) => void;
}

/** What an issuance is known by: never the certificate or key, only who got what until when. */
export interface IssuedSvid {
  readonly attestation: Attestation;
  readonly serial: string;
  readonly notAfter: Date;
}

export interface SvidResponse {
  /** PEM: the SVID, then the chain up to (not including) a root of `bundle`. */
  readonly certificate: string;
  /** PEM: every trusted root. */
  readonly bundle: string;
  readonly spiffeId: string;
  readonly notAfter: string;
}

export interface JwtResponse {
  readonly token: string;
}

function malformed(message: string): MandateError {
  return new MandateError('REQUEST_MALFORMED', message);
}

/** A JSON object with only the named fields. */
function fields(body: unknown, allowed: readonly string[], required: readonly string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw malformed('the request body must be a JSON object');
  const obj = body as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw malformed(`unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}; allowed: ${allowed.join(', ')}`);
  for (const r of required) if (obj[r] === undefined) throw malformed(`"${r}" is required`);
  return obj;
}

export class IdentityService {
  readonly #o: IdentityServiceOptions;

  constructor(options: IdentityServiceOptions) {
    this.#o = options;
  }

  #now(): Date {
    return this.#o.clock?.() ?? new Date();
  }

  #requireCA(): IssuingCA {
    const ca = this.#o.ca.current();
    if (!ca) throw new MandateError('NOT_READY', 'the CA is not loaded yet');
    return ca;
  }

  #attest(token: string, now: Date): Promise<Attestation> {
    return attest(token, { audience: this.#o.tokenAudience, trustDomain: this.#o.trustDomain, now, snapshot: this.#o.snapshot }, this.#o.attestation);
  }

  #observe(kind: 'svid' | 'jwt', startedNs: bigint): void {
    this.#o.metrics?.certificatesIssued.inc({ kind });
    this.#o.metrics?.issuanceDuration.observe({ kind }, Number(process.hrtime.bigint() - startedNs) / 1e9);
  }

  /** POST /v1/svid: { csr, ttlSeconds? } with the caller's ServiceAccount token. */
  async issueSvid(token: string, body: unknown): Promise<SvidResponse> {
    const started = process.hrtime.bigint();
    const now = this.#now();
    this.#requireCA();
    const req = fields(body, ['csr', 'ttlSeconds'], ['csr']);
    const attestation = await this.#attest(token, now);
    // The CA may have rotated during attestation; sign with the one current now.
    const ca = this.#requireCA();
    const signed = await signCsr(ca, { csrPem: req.csr, ttlSeconds: req.ttlSeconds, attestation, defaultTtlSeconds: this.#o.defaultCertTtlSeconds, now });
    this.#observe('svid', started);
    this.#o.log.info('issued X.509-SVID', {
      spiffeId: attestation.spiffeId,
      pod: `${attestation.namespace}/${attestation.pod.name}`,
      podUid: attestation.pod.uid,
      serial: signed.issued.serial,
      notAfter: signed.issued.notAfter.toISOString(),
    });
    this.#o.onIssued?.({ attestation, serial: signed.issued.serial, notAfter: signed.issued.notAfter });
    return {
      certificate: signed.certificatePem,
      bundle: ca.material.bundlePem,
      spiffeId: attestation.spiffeId,
      notAfter: signed.issued.notAfter.toISOString(),
    };
  }

  /** POST /v1/jwt: { audience } with the caller's ServiceAccount token. */
  async issueJwt(token: string, body: unknown): Promise<JwtResponse> {
    const started = process.hrtime.bigint();
    const now = this.#now();
    if (!this.#o.jwtKeys.signer()) throw new MandateError('NOT_READY', 'the JWT signing keys are not loaded yet');
    const req = fields(body, ['audience'], ['audience']);
    const attestation = await this.#attest(token, now);
    const key = this.#o.jwtKeys.signer();
    if (!key) throw new MandateError('NOT_READY', 'the JWT signing keys are not loaded yet');
    const jwt = await mintJwtSvid({ attestation, audience: req.audience, issuer: this.#o.issuer, key, now });
    this.#observe('jwt', started);
    this.#o.log.info('issued JWT-SVID', {
      spiffeId: attestation.spiffeId,
      pod: `${attestation.namespace}/${attestation.pod.name}`,
      podUid: attestation.pod.uid,
      audience: req.audience,
      jti: jwt.jti,
      kid: key.kid,
      expiresAt: jwt.expiresAt.toISOString(),
    });
    return { token: jwt.token };
  }

  /** GET /keys */
  keys(): JSONWebKeySet {
    const jwks = this.#o.jwtKeys.jwks();
    if (!jwks) throw new MandateError('NOT_READY', 'the JWT signing keys are not loaded yet');
    return jwks;
  }

  /** GET /.well-known/openid-configuration */
  discovery(): Record<string, unknown> {
    return discoveryDocument(this.#o.issuer);
  }
}
