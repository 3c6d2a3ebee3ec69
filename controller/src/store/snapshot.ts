// The Snapshot is the one read model every decision is made from. Stores (files now, the
// Kubernetes informers later) build a new one and swap it in atomically; a check holds on to the
// snapshot it started with, so a reload never changes the rules under an in-flight request.
import type { AgentIdentity, AgentPolicy, AgentTool, ObjectMeta } from '../../../crds/generated/types.ts';

/** A Secret as Mandate keeps it: only what tools reference, values decoded. Never logged. */
export interface SecretObject {
  readonly apiVersion: 'v1';
  readonly kind: 'Secret';
  readonly metadata: ObjectMeta;
  /** Decoded values (from `data`, base64, and `stringData`). */
  readonly values: ReadonlyMap<string, string>;
}

export interface Snapshot {
  /** Increases by one with every snapshot a store publishes. */
  readonly revision: number;
  readonly loadedAt: string;
  /** Where it came from, e.g. `files:/abs/policies` or `kubernetes`. */
  readonly source: string;
  /** Keyed by `namespace/name`. */
  readonly identities: ReadonlyMap<string, AgentIdentity>;
  readonly policies: ReadonlyMap<string, AgentPolicy>;
  readonly tools: ReadonlyMap<string, AgentTool>;
  readonly secrets: ReadonlyMap<string, SecretObject>;
}

export const objectKey = (meta: Pick<ObjectMeta, 'name' | 'namespace'>): string => `${meta.namespace ?? 'default'}/${meta.name}`;

/** A problem with one manifest or one policy rule, precise enough to fix without guessing. */
export interface ManifestProblem {
  /** File the object came from (standalone), if any. */
  readonly file?: string;
  /** 1-based line in `file` where the problem is, when known. */
  readonly line?: number;
  /** `Kind namespace/name`, or `document N` when the object has no usable identity. */
  readonly object: string;
  /** JSON path inside the object, e.g. `.spec.rules[2].when`. */
  readonly field: string;
  readonly message: string;
}

/** A snapshot and what was compiled from it, published together. */
export interface PublishedSnapshot<C> {
  readonly snapshot: Snapshot;
  readonly compiled: C;
}

/** The outcome of one attempt to build and publish a snapshot. */
export interface SnapshotLoad {
  /** True when this attempt published a new snapshot. */
  readonly ok: boolean;
  /** The revision being served after the attempt (0: nothing published yet). */
  readonly revision: number;
  readonly problems: readonly ManifestProblem[];
}

/**
 * Where the check pipeline gets its snapshots: the file store (standalone) or the informer store
 * (in a cluster). Readers call current() once per check and keep that reference, so a publish
 * never changes the rules under an in-flight request.
 */
export interface SnapshotSource<C> {
  current(): PublishedSnapshot<C> | undefined;
  subscribe(fn: (event: SnapshotLoad) => void): () => void;
  /** First load (files) or first full sync of every informer (cluster); then keeps it current. */
  start(): Promise<SnapshotLoad>;
  stop(): Promise<void>;
}
