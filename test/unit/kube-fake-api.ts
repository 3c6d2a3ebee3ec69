// An in-memory stand-in for the API server's list and watch of one resource, with the behaviour
// informers must survive: paged lists, resourceVersions, bookmarks, watches that end or fail,
// 410 Gone for a compacted resourceVersion, and injected failures. Events arrive asynchronously,
// as they would over a socket.
import type { ListerWatcher, ListPage, WatchHandle, WatchOptions } from '../../controller/src/kube/reflector.ts';
import type { CustomResource, SourceFactory } from '../../controller/src/kube/resources.ts';

interface Obj {
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly resourceVersion?: string; readonly uid?: string };
}
type Stored<T> = T & { readonly metadata: { readonly resourceVersion: string; readonly uid: string } };

interface Watcher {
  readonly onEvent: (type: string, object: unknown) => void;
  readonly onDone: (err?: unknown) => void;
  open: boolean;
  /** Connected but never delivers anything (a half-open connection). */
  readonly deaf: boolean;
}

/** One resourceVersion sequence shared by every resource, like etcd's. */
export class FakeClock {
  rv = 100;
  next(): string {
    return String(++this.rv);
  }
}

export class FakeResource implements ListerWatcher {
  readonly objects = new Map<string, Obj>();
  readonly events: { rv: number; type: string; object: Obj }[] = [];
  readonly watchers = new Set<Watcher>();
  readonly watchCalls: WatchOptions[] = [];
  listCalls = 0;
  /** Watches from a resourceVersion below this get 410 Gone. */
  compactedThrough = 0;
  /** Thrown by the next list / watch calls, in order. */
  readonly listFailures: Error[] = [];
  readonly watchFailures: Error[] = [];
  /** When set, new watches connect but never deliver anything (a half-open connection). */
  silent = false;
  readonly #clock: FakeClock;

  constructor(clock: FakeClock = new FakeClock()) {
    this.#clock = clock;
  }

  put<T extends Obj>(object: T): Stored<T> {
    const key = `${object.metadata.namespace ?? 'default'}/${object.metadata.name}`;
    const existing = this.objects.get(key);
    const type = existing ? 'MODIFIED' : 'ADDED';
    // Like the API server: a uid per incarnation of a name, kept across updates.
    const uid = existing?.metadata.uid ?? `uid-${this.#clock.rv + 1}`;
    const stored = structuredClone({ ...object, metadata: { ...object.metadata, uid, resourceVersion: this.#clock.next() } }) as Stored<T>;
    this.objects.set(key, stored);
    this.#record(type, stored);
    return stored;
  }

  remove(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const existing = this.objects.get(key);
    if (!existing) return;
    this.objects.delete(key);
    this.#record('DELETED', { ...existing, metadata: { ...existing.metadata, resourceVersion: this.#clock.next() } });
  }

  /** Forgets the event history, as etcd compaction does: older resourceVersions now get 410. */
  compact(): void {
    this.compactedThrough = this.#clock.rv;
    this.events.length = 0;
  }

  bookmark(): void {
    const rv = this.#clock.next();
    for (const w of this.watchers) if (!w.deaf) setImmediate(() => w.open && w.onEvent('BOOKMARK', { kind: 'Bookmark', metadata: { resourceVersion: rv } }));
  }

  /** Ends every open watch: normally, or with `err`. */
  endWatches(err?: unknown): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.open = false;
      setImmediate(() => w.onDone(err));
    }
  }

  /** Sends a watch ERROR event with `code` to every open watch, then ends it. */
  errorWatches(code: number): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      setImmediate(() => {
        w.onEvent('ERROR', { kind: 'Status', code, reason: code === 410 ? 'Expired' : 'InternalError', message: `fake ${code}` });
        w.open = false;
        w.onDone();
      });
    }
  }

  list(options: { limit: number; continue?: string }): Promise<ListPage> {
    this.listCalls++;
    const listFailure = this.listFailures.shift();
    if (listFailure !== undefined) return Promise.reject(listFailure);
    const all = [...this.objects.values()].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
    const start = options.continue ? Number(options.continue) : 0;
    const items = all.slice(start, start + options.limit).map((o) => structuredClone(o));
    const more = start + options.limit < all.length;
    return Promise.resolve({ items, resourceVersion: String(this.#clock.rv), ...(more ? { continue: String(start + options.limit) } : {}) });
  }

  watch(options: WatchOptions, onEvent: (type: string, object: unknown) => void, onDone: (err?: unknown) => void): Promise<WatchHandle> {
    this.watchCalls.push(options);
    const watchFailure = this.watchFailures.shift();
    if (watchFailure !== undefined) return Promise.reject(watchFailure);
    const w: Watcher = { onEvent, onDone, open: true, deaf: this.silent };
    const from = Number(options.resourceVersion);
    if (from < this.compactedThrough) {
      setImmediate(() => {
        onEvent('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
        w.open = false;
        onDone();
      });
      return Promise.resolve({ abort: () => void (w.open = false) });
    }
    this.watchers.add(w);
    if (!w.deaf) {
      const backlog = this.events.filter((e) => e.rv > from);
      for (const e of backlog) setImmediate(() => w.open && onEvent(e.type, structuredClone(e.object)));
    }
    return Promise.resolve({
      abort: () => {
        w.open = false;
        this.watchers.delete(w);
      },
    });
  }

  #record(type: string, object: Obj): void {
    this.events.push({ rv: Number(object.metadata.resourceVersion), type, object });
    for (const w of this.watchers) {
      if (w.deaf) continue;
      const copy = structuredClone(object);
      setImmediate(() => w.open && w.onEvent(type, copy));
    }
  }
}

/** The four kinds of source the store asks for, all in memory. */
export class FakeCluster implements SourceFactory {
  readonly clock = new FakeClock();
  readonly identities = new FakeResource(this.clock);
  readonly policies = new FakeResource(this.clock);
  readonly tools = new FakeResource(this.clock);
  readonly secretsByNamespace = new Map<string, FakeResource>();
  /** Namespaces whose Secrets list fails with 403, as without a RoleBinding there. */
  readonly forbidden = new Set<string>();
  /** Namespaces the store asked Secrets of, in order. */
  readonly requested: string[] = [];

  customResources(resource: CustomResource): ListerWatcher {
    return resource.plural === 'agentidentities' ? this.identities : resource.plural === 'agentpolicies' ? this.policies : this.tools;
  }

  secrets(namespace: string): ListerWatcher {
    this.requested.push(namespace);
    const res = this.secretsIn(namespace);
    const forbidden = (): Promise<never> =>
      Promise.reject(Object.assign(new Error('Forbidden'), { statusCode: 403, body: { kind: 'Status', code: 403, reason: 'Forbidden', message: `secrets is forbidden in ${namespace}` } }));
    // Checked per call, so a test can grant access later.
    return {
      list: (o) => (this.forbidden.has(namespace) ? forbidden() : res.list(o)),
      watch: (o, onEvent, onDone) => (this.forbidden.has(namespace) ? forbidden() : res.watch(o, onEvent, onDone)),
    };
  }

  secretsIn(namespace: string): FakeResource {
    let r = this.secretsByNamespace.get(namespace);
    if (!r) {
      r = new FakeResource(this.clock);
      this.secretsByNamespace.set(namespace, r);
    }
    return r;
  }
}

/** Polls `pred` until it holds; fails with `what` after `ms`. */
export async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
