// SPIFFE IDs as Mandate uses them. The syntax rules are those of the SPIFFE ID standard as the
// reference implementations enforce it (scheme `spiffe`, a lower-case trust domain, non-empty
// path segments of a small alphabet, no `.`/`..`, no percent-encoding, no userinfo, port, query
// or fragment). On top of that Mandate gives paths a meaning:
//   spiffe://<td>/ns/<namespace>/agent/<AgentIdentity>   an agent (the only form that may call)
//   spiffe://<td>/ns/<namespace>/sa/<serviceAccount>     a Mandate server component
//   spiffe://<td>                                        the trust domain itself (the CA)
import { MandateError } from '../errors.ts';

export const SPIFFE_SCHEME = 'spiffe://';
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_BYTES = 255;

/** Where the authz/identity servers live unless told otherwise (Helm may choose another namespace). */
export const DEFAULT_SERVER_NAMESPACE = 'mandate';
export const DEFAULT_SERVER_ACCOUNT = 'mandate';

export interface SpiffeId {
  readonly trustDomain: string;
  /** Path segments without separators; empty for the trust domain ID. */
  readonly segments: readonly string[];
}

export interface AgentRef {
  readonly namespace: string;
  readonly name: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
// Kubernetes names: a namespace is a DNS-1123 label, an object name a DNS-1123 subdomain.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `td` is not a valid trust domain name, or undefined when it is. */
export function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0) return 'trust domain is empty';
  if (td.length > MAX_TRUST_DOMAIN_BYTES) return `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`;
  if (!TRUST_DOMAIN.test(td)) return 'trust domain may contain only lower-case letters, digits, ".", "-" and "_"';
  return undefined;
}

function segmentProblem(segment: string): string | undefined {
  if (segment.length === 0) return 'path has an empty segment (a doubled or trailing "/")';
  if (segment === '.' || segment === '..') return 'path segments "." and ".." are not allowed';
  if (!SEGMENT.test(segment)) return 'path segments may contain only letters, digits, ".", "-" and "_"';
  return undefined;
}

export type SpiffeParse = { readonly ok: true; readonly id: SpiffeId } | { readonly ok: false; readonly problem: string };

/** Parses without throwing: for hot paths that turn problems into their own error. */
export function tryParseSpiffeId(uri: string): SpiffeParse {
  const fail = (problem: string): SpiffeParse => ({ ok: false, problem });
  if (typeof uri !== 'string' || uri.length === 0) return fail('SPIFFE ID is empty');
  if (Buffer.byteLength(uri, 'utf8') > MAX_SPIFFE_ID_BYTES) return fail(`SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  if (!uri.startsWith(SPIFFE_SCHEME)) {
    return fail(uri.toLowerCase().startsWith(SPIFFE_SCHEME) ? 'scheme must be lower-case "spiffe"' : 'scheme must be "spiffe://"');
  }
  const rest = uri.slice(SPIFFE_SCHEME.length);
  if (rest.includes('?')) return fail('SPIFFE ID must not have a query');
  if (rest.includes('#')) return fail('SPIFFE ID must not have a fragment');
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  if (authority.includes('@')) return fail('SPIFFE ID must not have userinfo');
  if (authority.includes(':')) return fail('SPIFFE ID must not have a port');
  const tdProblem = trustDomainProblem(authority);
  if (tdProblem) return fail(tdProblem);
  if (slash === -1) return { ok: true, id: { trustDomain: authority, segments: [] } };
  const segments = rest.slice(slash + 1).split('/');
  for (const s of segments) {
    const p = segmentProblem(s);
    if (p) return fail(p);
  }
  return { ok: true, id: { trustDomain: authority, segments } };
}

/** Parses a SPIFFE ID; throws CERT_REQUEST_INVALID naming the problem. */
export function parseSpiffeId(uri: string): SpiffeId {
  const r = tryParseSpiffeId(uri);
  if (!r.ok) throw new MandateError('CERT_REQUEST_INVALID', `invalid SPIFFE ID: ${r.problem}`);
  return r.id;
}

export function formatSpiffeId(id: SpiffeId): string {
  return id.segments.length === 0 ? `${SPIFFE_SCHEME}${id.trustDomain}` : `${SPIFFE_SCHEME}${id.trustDomain}/${id.segments.join('/')}`;
}

function nameProblem(namespace: string, name: string, kind: string): string | undefined {
  if (!DNS1123_LABEL.test(namespace)) return `namespace "${namespace}" is not a valid Kubernetes namespace name`;
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) return `${kind} name "${name}" is not a valid Kubernetes object name`;
  return undefined;
}

function assertTrustDomain(trustDomain: string): void {
  const p = trustDomainProblem(trustDomain);
  if (p) throw new MandateError('CERT_REQUEST_INVALID', `invalid SPIFFE ID: ${p}`);
}

/** spiffe://<td>/ns/<namespace>/agent/<name> */
export function agentSpiffeId(trustDomain: string, namespace: string, name: string): string {
  assertTrustDomain(trustDomain);
  const p = nameProblem(namespace, name, 'AgentIdentity');
  if (p) throw new MandateError('CERT_REQUEST_INVALID', `invalid agent SPIFFE ID: ${p}`);
  return `${SPIFFE_SCHEME}${trustDomain}/ns/${namespace}/agent/${name}`;
}

/** spiffe://<td>/ns/<namespace>/sa/<serviceAccount>: the identity of Mandate's own servers. */
export function serverSpiffeId(trustDomain: string, namespace = DEFAULT_SERVER_NAMESPACE, serviceAccount = DEFAULT_SERVER_ACCOUNT): string {
  assertTrustDomain(trustDomain);
  const p = nameProblem(namespace, serviceAccount, 'ServiceAccount');
  if (p) throw new MandateError('CERT_REQUEST_INVALID', `invalid server SPIFFE ID: ${p}`);
  return `${SPIFFE_SCHEME}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** spiffe://<td>: the SPIFFE ID of the signing authority (carried by the CA certificate). */
export function trustDomainSpiffeId(trustDomain: string): string {
  assertTrustDomain(trustDomain);
  return `${SPIFFE_SCHEME}${trustDomain}`;
}

export type MandateIdKind = 'agent' | 'server';

export type AgentParse = { readonly ok: true; readonly agent: AgentRef } | { readonly ok: false; readonly problem: string };

/** The `/ns/<ns>/<kind>/<name>` reading of a parsed ID, or the reason it is not one. */
export function classifyPath(id: SpiffeId): { kind: MandateIdKind; namespace: string; name: string } | string {
  const [ns, namespace, kindSegment, name, ...extra] = id.segments;
  if (id.segments.length === 0) return 'SPIFFE ID has no path (it names a trust domain, not a workload)';
  if (ns !== 'ns' || namespace === undefined || name === undefined || extra.length > 0 || (kindSegment !== 'agent' && kindSegment !== 'sa')) {
    return 'path is not of the form /ns/<namespace>/agent/<name> or /ns/<namespace>/sa/<name>';
  }
  const kind: MandateIdKind = kindSegment === 'agent' ? 'agent' : 'server';
  const p = nameProblem(namespace, name, kind === 'agent' ? 'AgentIdentity' : 'ServiceAccount');
  if (p) return p;
  return { kind, namespace, name };
}

/** Non-throwing agent parse for the authentication path. */
export function tryParseAgentSpiffeId(uri: string, trustDomain: string): AgentParse {
  const r = tryParseSpiffeId(uri);
  if (!r.ok) return { ok: false, problem: `invalid SPIFFE ID: ${r.problem}` };
  if (r.id.trustDomain !== trustDomain) {
    return { ok: false, problem: `SPIFFE ID is in trust domain "${r.id.trustDomain}", expected "${trustDomain}"` };
  }
  const c = classifyPath(r.id);
  if (typeof c === 'string') return { ok: false, problem: c };
  if (c.kind !== 'agent') return { ok: false, problem: 'SPIFFE ID names a Mandate server, not an agent (/ns/<namespace>/agent/<name>)' };
  return { ok: true, agent: { namespace: c.namespace, name: c.name } };
}

/** {namespace, name} of an agent SPIFFE ID in `trustDomain`; throws CERT_REQUEST_INVALID otherwise. */
export function parseAgentSpiffeId(uri: string, trustDomain: string): AgentRef {
  const r = tryParseAgentSpiffeId(uri, trustDomain);
  if (!r.ok) throw new MandateError('CERT_REQUEST_INVALID', r.problem);
  return r.agent;
}
