// Workload attestation: which AgentIdentity is this caller? The caller proves it with a projected
// ServiceAccount token (audience `mandate`), bound to its pod. The decision is made here from
// plain data; the two questions it asks the API server (TokenReview, the pod) go through ports
// so the decision table is tested without a cluster (kube-attest.ts is the real adapter).
//
//   token ─TokenReview─► authenticated, our audience, system:serviceaccount:<ns>:<sa>, bound to a pod
//         ─GET pod────► still there, same UID, runs as that ServiceAccount, not finished or leaving
//         ─snapshot───► exactly one AgentIdentity in <ns> with serviceAccount <sa> whose
//                       selector matches the pod's labels ─► not suspended, not expired
import type { AgentIdentity } from '../../../../crds/generated/types.ts';
import { MandateError } from '../../errors.ts';
import type { Snapshot } from '../../store/snapshot.ts';
import { agentSpiffeId } from '../spiffe.ts';
import { matchIdentity } from '../../../../sidecar/inject/decide.ts';

export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const SA_PREFIX = 'system:serviceaccount:';
/** Projected tokens are ~1 KiB; anything near this is not one. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/** The part of a TokenReview status attestation reads (authentication.k8s.io/v1). */
export interface TokenReviewStatus {
  readonly authenticated?: boolean;
  readonly user?: {
    readonly username?: string;
    readonly uid?: string;
    readonly groups?: readonly string[];
    readonly extra?: Readonly<Record<string, readonly string[]>>;
  };
  readonly audiences?: readonly string[];
  readonly error?: string;
}

export interface PodFacts {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly serviceAccountName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly phase?: string;
  /** Set when the pod is being deleted. */
  readonly deletionTimestamp?: string;
}

export interface AttestationPorts {
  /** TokenReview with spec.audiences [audience]; throws NOT_READY when the API server cannot answer. */
  reviewToken(token: string, audience: string): Promise<TokenReviewStatus>;
  /** undefined when the pod does not exist; throws NOT_READY when the API server cannot answer. */
  getPod(namespace: string, name: string): Promise<PodFacts | undefined>;
}

export interface BoundToken {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName: string;
  readonly podUid: string;
}

export interface Attestation {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly pod: { readonly name: string; readonly uid: string };
  readonly identity: AgentIdentity;
  /** AgentIdentity name (in `namespace`). */
  readonly identityName: string;
  readonly spiffeId: string;
}

export interface AttestationContext {
  readonly audience: string;
  readonly trustDomain: string;
  readonly now: Date;
  readonly snapshot: () => Snapshot | undefined;
}

function refuse(message: string): MandateError {
  return new MandateError('ATTESTATION_FAILED', message);
}

/** Cheap shape checks before a token costs a TokenReview. */
export function checkTokenShape(token: string): void {
  if (token.length === 0) throw refuse('no ServiceAccount token presented (Authorization: Bearer <projected token>)');
  if (token.length > MAX_TOKEN_BYTES) throw refuse(`bearer token is longer than ${MAX_TOKEN_BYTES} bytes; expected a projected ServiceAccount token`);
  if (!/^[A-Za-z0-9\-_.=+/]+$/.test(token)) throw refuse('bearer token has characters no ServiceAccount token has');
}

function single(extra: Readonly<Record<string, readonly string[]>> | undefined, key: string): string | undefined {
  const values = extra?.[key];
  return values && values.length === 1 && values[0] ? values[0] : undefined;
}

/** What a TokenReview says about the caller, or why that is not enough to attest it. */
export function boundTokenFromReview(status: TokenReviewStatus, audience: string): BoundToken {
  if (status.authenticated !== true) {
    const why = status.error ? `: ${status.error.replace(/\s+/g, ' ').slice(0, 300)}` : '';
    throw refuse(`the API server refused the ServiceAccount token (TokenReview for audience "${audience}")${why}`);
  }
  // An audience-unaware answer (no status.audiences) would accept tokens meant for the API server.
  if (!status.audiences?.includes(audience)) {
    throw refuse(`token is not for audience "${audience}" (TokenReview returned audiences ${JSON.stringify(status.audiences ?? [])})`);
  }
  const username = status.user?.username ?? '';
  if (!username.startsWith(SA_PREFIX)) throw refuse(`token belongs to "${username}", not to a ServiceAccount`);
  const parts = username.slice(SA_PREFIX.length).split(':');
  const [namespace, serviceAccount] = parts;
  if (parts.length !== 2 || !namespace || !serviceAccount) throw refuse(`malformed ServiceAccount user name "${username}"`);
  const podName = single(status.user?.extra, POD_NAME_EXTRA);
  const podUid = single(status.user?.extra, POD_UID_EXTRA);
  if (!podName || !podUid) {
    throw refuse(
      `token of ServiceAccount ${namespace}/${serviceAccount} is not bound to a pod (a legacy Secret token or a TokenRequest without a pod); ` +
        `mount a projected ServiceAccount token with audience "${audience}"`,
    );
  }
  return { namespace, serviceAccount, podName, podUid };
}

/** The pod the token is bound to, checked against the token. */
export function checkPod(pod: PodFacts | undefined, token: BoundToken): PodFacts {
  const ref = `${token.namespace}/${token.podName}`;
  if (!pod) throw refuse(`pod ${ref} that the token is bound to no longer exists`);
  if (pod.uid !== token.podUid) throw refuse(`pod ${ref} was replaced (UID ${pod.uid}, token bound to ${token.podUid})`);
  if (pod.serviceAccountName !== token.serviceAccount) {
    throw refuse(`pod ${ref} runs as ServiceAccount ${pod.serviceAccountName}, but the token is for ${token.serviceAccount}`);
  }
  if (pod.deletionTimestamp) throw refuse(`pod ${ref} is being deleted; nothing new is issued to it`);
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') throw refuse(`pod ${ref} has finished (${pod.phase}); nothing new is issued to it`);
  return pod;
}

/** Exactly one AgentIdentity for (namespace, ServiceAccount, pod labels), or IDENTITY_UNKNOWN saying why not. */
export function selectIdentity(snapshot: Snapshot, namespace: string, serviceAccount: string, labels: Readonly<Record<string, string>>): AgentIdentity {
  const match = matchIdentity(snapshot.identities.values(), namespace, serviceAccount, labels);
  if ('problem' in match) throw new MandateError('IDENTITY_UNKNOWN', match.problem);
  return match.identity;
}

/** IDENTITY_SUSPENDED when the kill switch is on or the identity has expired. */
export function checkIdentityActive(identity: AgentIdentity, now: Date): void {
  const ref = `${identity.metadata.namespace ?? ''}/${identity.metadata.name}`;
  if (identity.spec.suspended === true) throw new MandateError('IDENTITY_SUSPENDED', `AgentIdentity ${ref} is suspended: nothing is issued to it`);
  if (identity.spec.expiresAt !== undefined) {
    const at = Date.parse(identity.spec.expiresAt);
    // An unreadable expiry is treated as passed: fail closed.
    if (!Number.isFinite(at) || at <= now.getTime()) {
      throw new MandateError('IDENTITY_SUSPENDED', `AgentIdentity ${ref} expired at ${identity.spec.expiresAt}: nothing is issued to it`);
    }
  }
}

export async function attest(token: string, ctx: AttestationContext, ports: AttestationPorts): Promise<Attestation> {
  checkTokenShape(token);
  // Without identities no answer can be right; do not spend a TokenReview finding that out.
  if (ctx.snapshot() === undefined) throw new MandateError('NOT_READY', 'identities are not loaded yet');
  const bound = boundTokenFromReview(await ports.reviewToken(token, ctx.audience), ctx.audience);
  const pod = checkPod(await ports.getPod(bound.namespace, bound.podName), bound);
  // Read the snapshot after the network calls: a kill switch flipped meanwhile must count.
  const snapshot = ctx.snapshot();
  if (snapshot === undefined) throw new MandateError('NOT_READY', 'identities are not loaded yet');
  const identity = selectIdentity(snapshot, bound.namespace, bound.serviceAccount, pod.labels);
  checkIdentityActive(identity, ctx.now);
  return {
    namespace: bound.namespace,
    serviceAccount: bound.serviceAccount,
    pod: { name: pod.name, uid: pod.uid },
    identity,
    identityName: identity.metadata.name,
    spiffeId: agentSpiffeId(ctx.trustDomain, bound.namespace, identity.metadata.name),
  };
}
