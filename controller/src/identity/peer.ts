// Who is calling, from the mTLS peer certificate. The TLS layer has already verified the chain
// to Mandate's trust bundle and the validity period; this adds the X.509-SVID leaf rules
// (exactly one URI SAN, not a CA, no certificate-signing key usage) and Mandate's own rule that
// only agent IDs of this trust domain may call. Validity is checked again against the caller's
// `now` (defence in depth: a cached or replayed certificate object must not outlive itself).
//
// This runs on every check, so the result is cached by the certificate's DER bytes in a bounded
// LRU: a hit costs a map lookup plus the time comparison (~1 µs), a miss a native parse (~50 µs).
// Refusals are cached too (their reason does not change); only the time check runs every call.
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { MandateError } from '../errors.ts';
import type { PeerIdentity } from '../authz/types.ts';
import { normalizeSerial } from './ca.ts';
import { certificateExtensions, children, readTlv, type RawExtension } from './der.ts';
import { LruCache } from './lru.ts';
import { trustDomainProblem, tryParseAgentSpiffeId } from './spiffe.ts';

export const DEFAULT_PEER_CACHE_ENTRIES = 10_000;

export type PeerCertificateInput = PeerCertificate | NodeX509Certificate | Buffer | Uint8Array | null | undefined;

type Analysis =
  | { readonly ok: true; readonly identity: PeerIdentity; readonly notBefore: number; readonly notAfter: number }
  | { readonly ok: false; readonly problem: string };

export interface PeerAuthenticator {
  readonly trustDomain: string;
  /** The caller's identity, or MandateError PEER_UNAUTHENTICATED saying precisely why not. */
  authenticate(cert: PeerCertificateInput, now?: Date): PeerIdentity;
  readonly size: number;
  clear(): void;
}

function unauthenticated(problem: string): MandateError {
  return new MandateError('PEER_UNAUTHENTICATED', problem);
}

function rawDer(cert: PeerCertificateInput): Buffer | undefined {
  if (cert === null || cert === undefined) return undefined;
  if (Buffer.isBuffer(cert)) return cert.length > 0 ? cert : undefined;
  if (cert instanceof Uint8Array) return cert.length > 0 ? Buffer.from(cert.buffer, cert.byteOffset, cert.byteLength) : undefined;
  if (cert instanceof NodeX509Certificate) return cert.raw;
  // tls.getPeerCertificate() answers {} when the peer sent no certificate.
  const raw = (cert as Partial<PeerCertificate>).raw;
  return Buffer.isBuffer(raw) && raw.length > 0 ? raw : undefined;
}

// DER content octets of the OIDs involved, as certificateExtensions() reports them.
const OID_SUBJECT_ALT_NAME = '551d11';
const OID_KEY_USAGE = '551d0f';
const OID_BASIC_CONSTRAINTS = '551d13';
const OID_EXT_KEY_USAGE = '551d25';
const OID_KP_CLIENT_AUTH = '2b06010505070302';
const SAN_URI = 0x86;
const KU_DIGITAL_SIGNATURE = 0x80;
const KU_KEY_CERT_SIGN = 0x04;
const KU_CRL_SIGN = 0x02;

/** KeyUsage BIT STRING: the first octet holds digitalSignature..encipherOnly. */
function keyUsageFirstOctet(value: Uint8Array): number {
  const bits = readTlv(value, 0);
  if (bits.tag !== 0x03 || bits.end !== value.length || bits.end - bits.start < 1) throw new Error('malformed key usage');
  return bits.end - bits.start >= 2 ? (value[bits.start + 1] as number) : 0;
}

function isCAConstraint(value: Uint8Array): boolean {
  const seq = readTlv(value, 0);
  const first = children(value, seq)[0];
  return first?.tag === 0x01 && value[first.start] !== 0;
}

function extKeyUsages(value: Uint8Array): string[] {
  const seq = readTlv(value, 0);
  return children(value, seq).map((t) => Buffer.from(value.subarray(t.start, t.end)).toString('hex'));
}

function sanUris(value: Uint8Array): string[] {
  const seq = readTlv(value, 0);
  return children(value, seq)
    .filter((t) => t.tag === SAN_URI)
    .map((t) => Buffer.from(value.subarray(t.start, t.end)).toString('latin1'));
}

/**
 * The uncached work. OpenSSL (node:crypto) parses the certificate natively and gives validity and
 * serial; the four extensions that matter are read straight from the DER, because node:crypto
 * exposes neither key usage bits nor SANs in an unambiguous form (it joins them into a string).
 */
export function analyzePeerCertificate(der: Buffer, trustDomain: string): Analysis {
  const fail = (problem: string): Analysis => ({ ok: false, problem });
  let x: NodeX509Certificate;
  let extensions: RawExtension[];
  try {
    x = new NodeX509Certificate(der);
    extensions = certificateExtensions(der);
  } catch {
    return fail('client certificate does not parse');
  }
  try {
    const ext = (oid: string): Uint8Array | undefined => extensions.find((e) => e.oid === oid)?.value;
    const bc = ext(OID_BASIC_CONSTRAINTS);
    if (x.ca || (bc && isCAConstraint(bc))) return fail('client certificate is a CA certificate, not an X.509-SVID leaf');
    const ku = ext(OID_KEY_USAGE);
    if (!ku) return fail('client certificate has no key usage extension (an X.509-SVID must have one)');
    const usage = keyUsageFirstOctet(ku);
    if ((usage & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) !== 0) return fail('client certificate key usage allows signing certificates or CRLs');
    if ((usage & KU_DIGITAL_SIGNATURE) === 0) return fail('client certificate key usage lacks digitalSignature');
    const eku = ext(OID_EXT_KEY_USAGE);
    if (eku && !extKeyUsages(eku).includes(OID_KP_CLIENT_AUTH)) return fail('client certificate extended key usage lacks clientAuth');
    const san = ext(OID_SUBJECT_ALT_NAME);
    const uris = san ? sanUris(san) : [];
    if (uris.length === 0) return fail('client certificate has no URI SAN (no SPIFFE ID)');
    if (uris.length > 1) return fail(`client certificate has ${uris.length} URI SANs; an X.509-SVID has exactly one`);
    const spiffeId = uris[0] as string;
    const agent = tryParseAgentSpiffeId(spiffeId, trustDomain);
    if (!agent.ok) return fail(`client certificate SPIFFE ID ${JSON.stringify(spiffeId)} refused: ${agent.problem}`);
    return {
      ok: true,
      identity: Object.freeze({ spiffeId, namespace: agent.agent.namespace, name: agent.agent.name, serial: normalizeSerial(x.serialNumber) }),
      notBefore: x.validFromDate.getTime(),
      notAfter: x.validToDate.getTime(),
    };
  } catch {
    return fail('client certificate extensions do not parse');
  }
}

export function createPeerAuthenticator(opts: { trustDomain: string; maxEntries?: number }): PeerAuthenticator {
  const tdProblem = trustDomainProblem(opts.trustDomain);
  if (tdProblem) throw new MandateError('CONFIG_INVALID', tdProblem);
  const trustDomain = opts.trustDomain;
  const cache = new LruCache<string, Analysis>(opts.maxEntries ?? DEFAULT_PEER_CACHE_ENTRIES);
  return {
    trustDomain,
    authenticate(cert, now = new Date()) {
      const der = rawDer(cert);
      if (!der) throw unauthenticated('no client certificate presented');
      // latin1 maps each byte to one char: an exact, collision-free key without hashing.
      const key = der.toString('latin1');
      let a = cache.get(key);
      if (!a) {
        a = analyzePeerCertificate(der, trustDomain);
        cache.set(key, a);
      }
      if (!a.ok) throw unauthenticated(a.problem);
      const t = now.getTime();
      if (t < a.notBefore) throw unauthenticated(`client certificate is not valid until ${new Date(a.notBefore).toISOString()}`);
      if (t > a.notAfter) throw unauthenticated(`client certificate expired at ${new Date(a.notAfter).toISOString()}`);
      return a.identity;
    },
    get size() {
      return cache.size;
    },
    clear() {
      cache.clear();
    },
  };
}

const shared = new Map<string, PeerAuthenticator>();

/** peerFromCertificate with a process-wide cache per trust domain. */
export function peerFromCertificate(cert: PeerCertificateInput, trustDomain: string, now: Date = new Date()): PeerIdentity {
  let auth = shared.get(trustDomain);
  if (!auth) {
    auth = createPeerAuthenticator({ trustDomain });
    shared.set(trustDomain, auth);
  }
  return auth.authenticate(cert, now);
}
