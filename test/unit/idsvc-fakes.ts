// Test doubles for the identity service: an in-memory SecretClient with resourceVersions,
// compare-and-swap, watches (that can be made silent or fail), and fixtures for identities,
// snapshots, TokenReview answers and pods.
import type { AgentIdentity } from '../../crds/generated/types.ts';
import type { SecretClient, SecretRecord, SecretWatchEvent, SecretWatchHandle } from '../../controller/src/identity/cluster/secret-client.ts';
import type { AttestationPorts, PodFacts, TokenReviewStatus } from '../../controller/src/identity/service/attest.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';

interface Watcher {
  readonly namespace: string;
  readonly name: string;
  readonly onEvent: (e: SecretWatchEvent) => void;
  readonly onDone: (err: unknown) => void;
  open: boolean;
}

export class FakeSecrets implements SecretClient {
  readonly #store = new Map<string, SecretRecord>();
  readonly #watchers = new Set<Watcher>();
  #rv = 100;
  calls = { get: 0, create: 0, createdOk: 0, replace: 0, watch: 0 };
  /** New watches connect but deliver nothing (a half-open connection). */
  silent = false;
  /** Runs before each get/create resolves (to interleave concurrent callers). */
  beforeAnswer: (op: 'get' | 'create' | 'replace') => Promise<void> = () => Promise.resolve();
  /** Thrown by the next get/create calls, in order. */
  readonly failures: Error[] = [];

  #key(namespace: string, name: string): string {
    return `${namespace}/${name}`;
  }

  #emit(namespace: string, name: string, e: SecretWatchEvent): void {
    if (this.silent) return;
    for (const w of this.#watchers) {
      // Asynchronous, as over a socket.
      if (w.open && w.namespace === namespace && w.name === name) queueMicrotask(() => w.open && w.onEvent(e));
    }
  }

  peek(namespace: string, name: string): SecretRecord | undefined {
    return this.#store.get(this.#key(namespace, name));
  }

  /** Writes like a human with kubectl would (no CAS); returns the new record. */
  put(namespace: string, name: string, data: Record<string, string>, type = 'Opaque'): SecretRecord {
    const prev = this.#store.get(this.#key(namespace, name));
    const rec: SecretRecord = { namespace, name, uid: prev?.uid ?? `uid-${name}`, resourceVersion: String(++this.#rv), type, data: new Map(Object.entries(data)) };
    this.#store.set(this.#key(namespace, name), rec);
    this.#emit(namespace, name, { type: prev ? 'MODIFIED' : 'ADDED', secret: rec });
    return rec;
  }

  delete(namespace: string, name: string): void {
    this.#store.delete(this.#key(namespace, name));
    this.#emit(namespace, name, { type: 'DELETED', resourceVersion: String(++this.#rv) });
  }

  /** Ends every open watch with an ERROR event carrying `code` (410 = Gone). */
  failWatches(code: number): void {
    for (const w of this.#watchers) if (w.open) queueMicrotask(() => w.open && w.onEvent({ type: 'ERROR', code, message: `injected ${code}` }));
  }

  /** Ends every open watch as if the server closed it. */
  endWatches(err?: unknown): void {
    for (const w of [...this.#watchers]) {
      if (!w.open) continue;
      w.open = false;
      this.#watchers.delete(w);
      queueMicrotask(() => w.onDone(err));
    }
  }

  openWatches(): number {
    return [...this.#watchers].filter((w) => w.open).length;
  }

  async get(namespace: string, name: string): Promise<SecretRecord | undefined> {
    this.calls.get++;
    const f = this.failures.shift();
    await this.beforeAnswer('get');
    if (f !== undefined) throw f;
    return this.#store.get(this.#key(namespace, name));
  }

  async create(namespace: string, name: string, data: Readonly<Record<string, string>>): Promise<SecretRecord | undefined> {
    this.calls.create++;
    const f = this.failures.shift();
    await this.beforeAnswer('create');
    if (f !== undefined) throw f;
    if (this.#store.has(this.#key(namespace, name))) return undefined;
    this.calls.createdOk++;
    return this.put(namespace, name, { ...data });
  }

  async replace(current: SecretRecord, data: Readonly<Record<string, string>>): Promise<SecretRecord | undefined> {
    this.calls.replace++;
    await this.beforeAnswer('replace');
    const stored = this.#store.get(this.#key(current.namespace, current.name));
    if (!stored || stored.resourceVersion !== current.resourceVersion) return undefined;
    return this.put(current.namespace, current.name, { ...data }, stored.type);
  }

  watch(namespace: string, name: string, _rv: string, onEvent: (e: SecretWatchEvent) => void, onDone: (err: unknown) => void): Promise<SecretWatchHandle> {
    this.calls.watch++;
    const w: Watcher = { namespace, name, onEvent, onDone, open: true };
    this.#watchers.add(w);
    return Promise.resolve({
      stop: () => {
        w.open = false;
        this.#watchers.delete(w);
      },
    });
  }
}

/** Polls `cond` (every 5 ms) until it holds or `ms` passes. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const TD = 'cluster.local';
export const AUDIENCE = 'mandate';

export function identity(namespace: string, name: string, spec: Partial<AgentIdentity['spec']> = {}, labels?: Record<string, string>): AgentIdentity {
  return {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentIdentity',
    metadata: { name, namespace, ...(labels ? { labels } : {}) },
    spec: { owner: 'team@example.com', serviceAccount: name, ...spec },
  };
}

export function snapshotOf(identities: readonly AgentIdentity[]): Snapshot {
  return {
    revision: 1,
    loadedAt: new Date(0).toISOString(),
    source: 'test',
    identities: new Map(identities.map((i) => [`${i.metadata.namespace ?? 'default'}/${i.metadata.name}`, i])),
    policies: new Map(),
    tools: new Map(),
    secrets: new Map(),
  };
}

export interface FakeWorkload {
  readonly token: string;
  readonly review: TokenReviewStatus;
  readonly pod?: PodFacts;
}

/** A bound token of `namespace/sa` for pod `pod` with `labels`, as the API server would review it. */
export function workload(namespace: string, sa: string, pod: string, labels: Record<string, string> = {}, token = `tok-${namespace}-${sa}-${pod}`): FakeWorkload {
  const uid = `uid-${pod}`;
  return {
    token,
    review: {
      authenticated: true,
      audiences: [AUDIENCE],
      user: {
        username: `system:serviceaccount:${namespace}:${sa}`,
        uid: `sa-uid-${sa}`,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`],
        extra: { 'authentication.kubernetes.io/pod-name': [pod], 'authentication.kubernetes.io/pod-uid': [uid] },
      },
    },
    pod: { namespace, name: pod, uid, serviceAccountName: sa, labels, phase: 'Running' },
  };
}

export class FakeAttestation implements AttestationPorts {
  readonly reviews = new Map<string, TokenReviewStatus>();
  readonly pods = new Map<string, PodFacts>();
  reviewCalls = 0;
  podCalls = 0;
  /** Awaited inside reviewToken (to hold requests in flight). */
  gate: Promise<void> = Promise.resolve();
  /** Runs after the review answer is decided (to change the world mid-request). */
  afterReview: () => void = () => undefined;

  add(w: FakeWorkload): this {
    this.reviews.set(w.token, w.review);
    if (w.pod) this.pods.set(`${w.pod.namespace}/${w.pod.name}`, w.pod);
    return this;
  }

  async reviewToken(token: string, audience: string): Promise<TokenReviewStatus> {
    this.reviewCalls++;
    await this.gate;
    const r = this.reviews.get(token);
    this.afterReview();
    if (!r) return { authenticated: false, error: 'invalid bearer token' };
    if (r.authenticated && !(r.audiences ?? []).includes(audience)) {
      return { authenticated: false, error: `token audiences ${JSON.stringify(r.audiences)} is invalid for the target audiences ["${audience}"]` };
    }
    return r;
  }

  getPod(namespace: string, name: string): Promise<PodFacts | undefined> {
    this.podCalls++;
    return Promise.resolve(this.pods.get(`${namespace}/${name}`));
  }
}
