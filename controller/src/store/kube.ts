// The cluster store: informers for AgentIdentity, AgentPolicy and AgentTool (all namespaces) and
// for the Secrets that tools' credentials live in, behind the same SnapshotSource the file store
// serves. Events only mark the store dirty; a publish runs at most once per coalescing window
// (25 ms by default), builds a Snapshot from the caches, compiles it, and swaps it in whole. A
// check keeps the pair it took; nothing it holds is ever mutated.
//
// Unlike the file store, a problem in one object does not block the rest: that object is served at
// its last good version, or left out if it never compiled (see kube/last-good.ts for the risk this
// leaves and how it is bounded). Problems are exposed for the reconciler to turn into conditions.
//
// Secrets: only those referenced by a tool's credential matter, and a label selector cannot say
// "referenced". Watching every Secret of the cluster would need cluster-wide read on Secrets and
// hold every team's credentials in memory. Instead there is one Secret informer per namespace that
// holds a tool with a credential, started and stopped as tools come and go. It needs list and watch
// on Secrets only in those namespaces (a RoleBinding per agent namespace to the chart's ClusterRole;
// cluster-wide binding also works), and holds only those namespaces' Secrets, trimmed to type and
// data (see kube/resources.ts). A namespace whose Secrets cannot be read holds back only its own
// credentialed tools, with a problem that says so.
//
// While the API server is unreachable the caches are kept and the last snapshot is served; the
// informers retry with backoff and health() says how stale the caches may be.
import type { MandateResource } from '../../../crds/generated/types.ts';
import type { Config } from '../config.ts';
import { MandateError } from '../errors.ts';
import { deepFreeze, FrozenMap } from '../freeze.ts';
import type { BackoffOptions } from '../kube/backoff.ts';
import type { Change } from '../kube/cache.ts';
import type { KubeClients } from '../kube/client.ts';
import { Coalescer } from '../kube/coalesce.ts';
import { labelOf, labelsOf, resolveServed, type Fallback, type ServedSets } from '../kube/last-good.ts';
import { Reflector, type ReflectorHealth } from '../kube/reflector.ts';
import { customResourceTransform, kubeSources, RESOURCES, secretTransform, type CachedSecret, type SourceFactory } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import { formatPath } from './field-path.ts';
import { decodeSecret } from './secrets.ts';
import { objectKey, type ManifestProblem, type PublishedSnapshot, type SecretObject, type Snapshot, type SnapshotLoad, type SnapshotSource } from './snapshot.ts';

export interface KubeStoreOptions<C> {
  readonly sources: SourceFactory;
  readonly log: Logger;
  /** Turns a snapshot into what checks run on; problems are tied to objects and isolated. */
  readonly compile: (s: Snapshot) => { compiled: C; problems: readonly ManifestProblem[] };
  /** A watch silent (not even a bookmark) for this long is restarted. */
  readonly watchdogSeconds: number;
  /** Coalescing window for bursts of events. Default 25 ms. */
  readonly debounceMs?: number;
  readonly backoff?: BackoffOptions;
  /** Snapshot.source. Default `kubernetes`. */
  readonly source?: string;
}

export interface KubeStoreHealth {
  /** Every informer completed its first full list and the first snapshot was built (sticky: an
   *  outage later does not unset it, because the last snapshot keeps being served). */
  readonly synced: boolean;
  /** The caches were known current at this time: the oldest last contact (list, watch start,
   *  event or bookmark) among the informers. Staleness is now minus this. */
  readonly lastSyncAt?: string;
  /** Failed list/watch attempts since start, all informers. */
  readonly watchErrors: number;
  readonly revision: number;
  readonly lastPublishAt?: string;
  readonly informers: readonly ReflectorHealth[];
}

type Resource = MandateResource;
const resourceKeyed = { keyOf: (o: Resource): string => objectKey(o.metadata), versionOf: (o: Resource): string => o.metadata.resourceVersion ?? '' };
const secretKeyed = { keyOf: (s: CachedSecret): string => `${s.metadata.namespace}/${s.metadata.name}`, versionOf: (s: CachedSecret): string => s.metadata.resourceVersion };

interface Decoded {
  readonly resourceVersion: string;
  readonly secret: SecretObject;
  readonly problems: readonly ManifestProblem[];
}

interface Built<C> {
  readonly snapshot: Snapshot;
  readonly compiled: C;
  readonly problems: readonly ManifestProblem[];
  readonly secretVersions: string;
}

const credentialRef = (tool: Resource): { namespace: string; name: string } | undefined => {
  if (tool.kind !== 'AgentTool') return undefined;
  const ref = tool.spec.credential?.secretRef;
  return ref ? { namespace: tool.metadata.namespace ?? 'default', name: ref.name } : undefined;
};

export class KubeStore<C> implements SnapshotSource<C> {
  readonly #o: KubeStoreOptions<C>;
  readonly #log: Logger;
  readonly #identities: Reflector<Resource>;
  readonly #policies: Reflector<Resource>;
  readonly #tools: Reflector<Resource>;
  readonly #secrets = new Map<string, Reflector<CachedSecret>>();
  readonly #listeners = new Set<(e: SnapshotLoad) => void>();
  readonly #lastGood = new Map<string, Resource>();
  readonly #decoded = new Map<string, Decoded>();
  readonly #coalescer: Coalescer;
  #referenced = new Set<string>();
  #current: PublishedSnapshot<C> | undefined;
  #revision = 0;
  #fingerprint: string | undefined;
  #problems: readonly ManifestProblem[] = [];
  #problemsDigest = '';
  #fallbacks: ReadonlyMap<string, Fallback> = new Map();
  #ready = false;
  #stopped = false;
  #starting: Promise<SnapshotLoad> | undefined;
  #lastPublishAt: number | undefined;
  #retiredErrors = 0;

  constructor(options: KubeStoreOptions<C>) {
    this.#o = options;
    this.#log = options.log.child({ component: 'store', source: options.source ?? 'kubernetes' });
    this.#coalescer = new Coalescer(options.debounceMs ?? 25, (waited) => void this.#publish(waited));
    const informer = (r: (typeof RESOURCES)[keyof typeof RESOURCES]): Reflector<Resource> =>
      new Reflector<Resource>({
        name: r.plural,
        source: options.sources.customResources(r),
        transform: customResourceTransform(r.kind),
        keyed: resourceKeyed,
        onChange: () => this.#changed(),
        log: this.#log,
        watchdogMs: options.watchdogSeconds * 1000,
        ...(options.backoff ? { backoff: options.backoff } : {}),
      });
    this.#identities = informer(RESOURCES.identities);
    this.#policies = informer(RESOURCES.policies);
    this.#tools = informer(RESOURCES.tools);
  }

  current(): PublishedSnapshot<C> | undefined {
    return this.#current;
  }

  subscribe(fn: (event: SnapshotLoad) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Problems of current object versions, from the last publish attempt. Secret values never appear. */
  problems(): readonly ManifestProblem[] {
    return this.#problems;
  }

  /** Objects not served at their current version, keyed by `Kind namespace/name`. */
  fallbacks(): ReadonlyMap<string, Fallback> {
    return this.#fallbacks;
  }

  /** Resolves after the first full list of every informer and the first publish. */
  start(): Promise<SnapshotLoad> {
    if (this.#stopped) return Promise.reject(new MandateError('NOT_READY', 'the Kubernetes store is stopped'));
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#coalescer.cancel();
    await Promise.all([this.#identities, this.#policies, this.#tools, ...this.#secrets.values()].map((r) => r.stop()));
  }

  health(): KubeStoreHealth {
    const informers = [this.#identities, this.#policies, this.#tools, ...this.#secrets.values()].map((r) => r.health());
    let oldest: string | undefined;
    let complete = true;
    for (const h of informers) {
      // A Secret informer that never synced (no RoleBinding in that namespace) holds back its own
      // tools and says so in problems(); it does not make the whole cache look stale.
      if (h.name.startsWith('secrets/') && !h.synced) continue;
      if (h.lastContactAt === undefined) complete = false;
      else if (oldest === undefined || h.lastContactAt < oldest) oldest = h.lastContactAt;
    }
    return {
      synced: this.#ready,
      ...(complete && oldest !== undefined ? { lastSyncAt: oldest } : {}),
      watchErrors: this.#retiredErrors + informers.reduce((n, h) => n + h.errors, 0),
      revision: this.#revision,
      ...(this.#lastPublishAt !== undefined ? { lastPublishAt: new Date(this.#lastPublishAt).toISOString() } : {}),
      informers,
    };
  }

  async #start(): Promise<SnapshotLoad> {
    const crds = [this.#identities, this.#policies, this.#tools];
    for (const r of crds) r.start();
    await Promise.all(crds.map((r) => r.whenSynced()));
    // Secret informers follow the tools; tools can change while they sync, so look again (bounded).
    for (let round = 0; round < 3; round++) {
      if (!this.#syncSecretScopes()) break;
      await Promise.all([...this.#secrets.values()].map((r) => r.whenSynced({ settleOnTerminal: true })));
    }
    if (this.#stopped) throw new MandateError('NOT_READY', 'the Kubernetes store was stopped before its first sync');
    this.#ready = true;
    this.#coalescer.cancel();
    return this.#publish(0);
  }

  #changed(): void {
    if (this.#ready && !this.#stopped) this.#coalescer.trigger();
  }

  #secretChanged(change: Change<CachedSecret>): void {
    if (this.#referenced.has(change.key)) this.#changed();
  }

  /** Starts Secret informers for namespaces that now hold credentialed tools, stops the others. True if any started. */
  #syncSecretScopes(): boolean {
    const namespaces = new Set<string>();
    const referenced = new Set<string>();
    const note = (o: Resource): void => {
      const ref = credentialRef(o);
      if (!ref) return;
      namespaces.add(ref.namespace);
      referenced.add(`${ref.namespace}/${ref.name}`);
    };
    for (const t of this.#tools.cache.values()) note(t);
    for (const t of this.#lastGood.values()) note(t);
    this.#referenced = referenced;

    let started = false;
    for (const ns of namespaces) {
      if (this.#secrets.has(ns) || this.#stopped) continue;
      const r = new Reflector<CachedSecret>({
        name: `secrets/${ns}`,
        source: this.#o.sources.secrets(ns),
        transform: secretTransform,
        keyed: secretKeyed,
        onChange: (c) => this.#secretChanged(c),
        // Either changes what #blocked says about this namespace's tools.
        onSynced: () => this.#changed(),
        onSyncError: () => this.#changed(),
        log: this.#log,
        watchdogMs: this.#o.watchdogSeconds * 1000,
        ...(this.#o.backoff ? { backoff: this.#o.backoff } : {}),
      });
      this.#secrets.set(ns, r);
      r.start();
      started = true;
      this.#log.info('watching Secrets of a namespace with credentialed tools', { namespace: ns });
    }
    for (const [ns, r] of this.#secrets) {
      if (namespaces.has(ns)) continue;
      this.#secrets.delete(ns);
      this.#retiredErrors += r.health().errors;
      void r.stop();
      this.#log.info('stopped watching Secrets of a namespace: no credentialed tools left', { namespace: ns });
    }
    return started;
  }

  /** Why a tool cannot be served yet: its namespace's Secrets are not (or cannot be) listed. */
  #blocked(object: Resource): { field: string; message: string } | undefined {
    const ref = credentialRef(object);
    if (!ref) return undefined;
    const informer = this.#secrets.get(ref.namespace);
    if (informer?.synced) return undefined;
    const err = informer?.health().lastError;
    const message = err
      ? `cannot list the Secrets of namespace ${ref.namespace} (${err.status ?? err.code}); Mandate needs list and watch on secrets there: ${err.message}`
      : `the Secrets of namespace ${ref.namespace} are not listed yet`;
    return { field: '.spec.credential.secretRef', message };
  }

  #secret(key: string, cached: CachedSecret): Decoded {
    const memo = this.#decoded.get(key);
    if (memo && memo.resourceVersion === cached.metadata.resourceVersion) return memo;
    const { secret, issues } = decodeSecret(cached as unknown as Record<string, unknown>);
    const label = `Secret ${key}`;
    const decoded: Decoded = {
      resourceVersion: cached.metadata.resourceVersion,
      secret: deepFreeze(secret),
      problems: issues.map((i) => ({ object: label, field: formatPath(i.path), message: i.message })),
    };
    this.#decoded.set(key, decoded);
    return decoded;
  }

  #build(served: ServedSets, revision: number): Built<C> {
    const secrets = new Map<string, SecretObject>();
    const secretProblems: ManifestProblem[] = [];
    const versions: string[] = [];
    for (const tool of served.tools.values()) {
      const ref = credentialRef(tool);
      if (!ref) continue;
      const key = `${ref.namespace}/${ref.name}`;
      if (secrets.has(key)) continue;
      const cached = this.#secrets.get(ref.namespace)?.cache.get(key);
      if (!cached) continue; // compile reports the tool: "Secret ... not found"
      const d = this.#secret(key, cached);
      secrets.set(key, d.secret);
      secretProblems.push(...d.problems);
      versions.push(`${key}@${d.resourceVersion}`);
    }
    const snapshot: Snapshot = Object.freeze({
      revision,
      loadedAt: new Date().toISOString(),
      source: this.#o.source ?? 'kubernetes',
      identities: new FrozenMap(served.identities),
      policies: new FrozenMap(served.policies),
      tools: new FrozenMap(served.tools),
      secrets: new FrozenMap(secrets),
    });
    const out = this.#o.compile(snapshot);
    // Secret problems are reported but never block: the tool that needs the broken key says so itself.
    return { snapshot, compiled: out.compiled, problems: out.problems, secretVersions: versions.sort().join(' ') + ` ${secretProblems.length}` };
  }

  #publish(waitedMs: number): SnapshotLoad {
    let load: SnapshotLoad;
    try {
      load = this.#attempt(waitedMs);
    } catch (err) {
      // A bug, not a bad object: keep serving what is published and say so.
      this.#log.error('snapshot publish failed; still serving the previous revision', { err, revision: this.#revision });
      load = { ok: false, revision: this.#revision, problems: [{ object: 'snapshot', field: '', message: `publish failed: ${(err as Error).message}` }] };
    }
    load = deepFreeze(load);
    for (const fn of this.#listeners) {
      try {
        fn(load);
      } catch (err) {
        this.#log.error('store subscriber threw', { err });
      }
    }
    return load;
  }

  #attempt(waitedMs: number): SnapshotLoad {
    const started = Date.now();
    const current: ServedSets = {
      identities: this.#identities.cache as ServedSets['identities'],
      policies: this.#policies.cache as ServedSets['policies'],
      tools: this.#tools.cache as ServedSets['tools'],
    };
    const live = labelsOf(current);
    for (const label of this.#lastGood.keys()) if (!live.has(label)) this.#lastGood.delete(label);
    this.#syncSecretScopes();

    const revision = this.#revision + 1;
    const resolution = resolveServed(
      { current, lastGood: this.#lastGood, blocked: (o) => this.#blocked(o) },
      (served) => this.#build(served, revision),
    );
    const secretProblems = resolution.result ? this.#secretProblems(resolution.served) : [];
    const problems = [...secretProblems, ...resolution.problems];
    this.#problems = Object.freeze(problems);
    this.#fallbacks = resolution.fallbacks;
    this.#logProblems(problems, resolution.fallbacks);
    this.#pruneDecoded();

    const result = resolution.result;
    if (!result) {
      this.#log.error(this.#current ? `snapshot not publishable; still serving revision ${this.#revision}` : 'snapshot not publishable; nothing is served yet', {
        problems: problems.length,
      });
      return { ok: false, revision: this.#revision, problems };
    }
    for (const [kind, map] of [['AgentIdentity', resolution.served.identities], ['AgentPolicy', resolution.served.policies], ['AgentTool', resolution.served.tools]] as const) {
      for (const [key, object] of map) {
        const label = labelOf(kind, key);
        if (!resolution.fallbacks.has(label)) this.#lastGood.set(label, object);
      }
    }
    const fingerprint = this.#fingerprintOf(resolution.served, resolution.fallbacks, result.secretVersions);
    if (fingerprint === this.#fingerprint) {
      // A change that is not served (a broken edit, an unreferenced Secret): nothing new to publish.
      return { ok: false, revision: this.#revision, problems };
    }
    this.#revision = revision;
    this.#fingerprint = fingerprint;
    this.#current = Object.freeze({ snapshot: result.snapshot, compiled: result.compiled });
    this.#lastPublishAt = Date.now();
    const s = result.snapshot;
    this.#log.info('snapshot published', {
      revision,
      // One string: the logger redacts any field whose name looks like "secret".
      objects: `identities=${s.identities.size} policies=${s.policies.size} tools=${s.tools.size} Secrets=${s.secrets.size}`,
      problems: problems.length,
      fallbacks: resolution.fallbacks.size,
      waitedMs: Math.round(waitedMs),
      buildMs: Date.now() - started,
    });
    return { ok: true, revision, problems };
  }

  #secretProblems(served: ServedSets): ManifestProblem[] {
    const out: ManifestProblem[] = [];
    const seen = new Set<string>();
    for (const tool of served.tools.values()) {
      const ref = credentialRef(tool);
      if (!ref) continue;
      const key = `${ref.namespace}/${ref.name}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(...(this.#decoded.get(key)?.problems ?? []));
    }
    return out;
  }

  #pruneDecoded(): void {
    for (const key of this.#decoded.keys()) if (!this.#referenced.has(key)) this.#decoded.delete(key);
  }

  #fingerprintOf(served: ServedSets, fallbacks: ReadonlyMap<string, Fallback>, secretVersions: string): string {
    const parts: string[] = [];
    for (const [kind, map] of [['AgentIdentity', served.identities], ['AgentPolicy', served.policies], ['AgentTool', served.tools]] as const) {
      for (const [key, object] of map) {
        const label = labelOf(kind, key);
        parts.push(`${label}@${object.metadata.resourceVersion ?? ''}${fallbacks.get(label)?.suspendedOverride ? '!suspended' : ''}`);
      }
    }
    return `${parts.sort().join('\n')}\n${secretVersions}`;
  }

  #logProblems(problems: readonly ManifestProblem[], fallbacks: ReadonlyMap<string, Fallback>): void {
    const digest = JSON.stringify([problems, [...fallbacks.values()]]);
    if (digest === this.#problemsDigest) return;
    this.#problemsDigest = digest;
    for (const p of problems) this.#log.warn('object problem', { object: p.object, field: p.field, problem: p.message });
    for (const f of fallbacks.values()) {
      if (f.served === 'lastGood') {
        this.#log.warn('serving the last good version', { object: f.object, resourceVersion: f.resourceVersion, currentResourceVersion: f.currentResourceVersion, suspendedOverride: f.suspendedOverride });
      } else {
        this.#log.warn('object not served: no version of it can be served', { object: f.object, currentResourceVersion: f.currentResourceVersion });
      }
    }
  }
}

/** The store for `mandate serve` in a cluster: the API server behind `clients`, config's watchdog. */
export function createKubeStore<C>(
  config: Pick<Config, 'cluster'>,
  clients: KubeClients,
  log: Logger,
  compile: KubeStoreOptions<C>['compile'],
): KubeStore<C> {
  const watchdogSeconds = config.cluster.watchdogSeconds;
  return new KubeStore<C>({ sources: kubeSources(clients, watchdogSeconds * 1000), log, compile, watchdogSeconds, source: `kubernetes:${clients.server}` });
}
