// Fakes for the reconciler's unit tests: a manual scheduler (time moves only when a test says),
// an in-memory Lease with the API server's optimistic concurrency, and deferred promises.
import { MandateError } from '../../controller/src/errors.ts';
import type { LeaseApi, LeaseRecord, LeaseSpecFields } from '../../controller/src/reconcile/leader.ts';
import type { Scheduler, TimerHandle } from '../../controller/src/reconcile/scheduler.ts';

/** Lets promise chains that are already resolvable run to completion. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly fn: () => void;
}

export class ManualScheduler implements Scheduler {
  #now = 0;
  #wallBase: number;
  #next = 1;
  #timers: Timer[] = [];
  /** What random() returns; a function for sequences. */
  randomValue: () => number = () => 0.5;
  /** Timers fire up to this much before their time, as Node's may relative to performance.now(). */
  earlyMs = 0;

  constructor(wallStart = Date.parse('2025-06-01T12:00:00Z')) {
    this.#wallBase = wallStart;
  }

  now(): number {
    return this.#now;
  }

  wallTime(): Date {
    return new Date(this.#wallBase + this.#now);
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    const delay = Math.max(0, ms);
    // Early by up to earlyMs, but time still moves forward, as on a real event loop.
    this.#timers.push({ id, at: this.#now + delay - Math.min(this.earlyMs, delay / 2), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) this.#timers = this.#timers.filter((t) => t.id !== handle.id);
  }

  random(): number {
    return this.randomValue();
  }

  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing due timers in order and letting their promises settle. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await flush();
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t.id !== due.id);
      this.#now = due.at;
      due.fn();
      await flush();
    }
    this.#now = target;
    await flush();
  }

  /** Advances in steps until `predicate` holds; fails after `maxMs` of fake time. */
  async advanceUntil(predicate: () => boolean, maxMs: number, stepMs = 10): Promise<number> {
    const start = this.#now;
    while (!predicate()) {
      if (this.#now - start > maxMs) throw new Error(`condition not met within ${maxMs} ms of fake time`);
      await this.advance(stepMs);
    }
    return this.#now - start;
  }
}

/** One Lease as the API server keeps it: a resourceVersion that changes on every write, 409 on a stale one. */
export class FakeLeaseStore {
  record: LeaseRecord | undefined;
  #version = 100;
  writes = 0;
  /** Called before an update is applied; a test can make another writer win the race here. */
  beforeUpdate: (() => void) | undefined;

  put(spec: LeaseSpecFields): LeaseRecord {
    this.record = { resourceVersion: String(++this.#version), spec: { ...spec } };
    this.writes++;
    return this.record;
  }
}

const conflict = (what: string): MandateError => new MandateError('KUBE_CONFLICT', `${what}: 409 Conflict`, { status: 409 });

/** A LeaseApi over a FakeLeaseStore; `down` makes every call fail, `hang` makes them never answer. */
export class FakeLeaseApi implements LeaseApi {
  readonly store: FakeLeaseStore;
  down = false;
  hang = false;
  calls = 0;

  constructor(store: FakeLeaseStore) {
    this.store = store;
  }

  #gate(): Promise<void> {
    this.calls++;
    if (this.hang) return new Promise<void>(() => undefined);
    if (this.down) return Promise.reject(new MandateError('KUBE_UNAVAILABLE', 'API server unreachable'));
    return Promise.resolve();
  }

  async get(): Promise<LeaseRecord | undefined> {
    await this.#gate();
    return this.store.record ? structuredClone(this.store.record) : undefined;
  }

  async create(spec: LeaseSpecFields): Promise<LeaseRecord> {
    await this.#gate();
    if (this.store.record) throw conflict('create lease');
    return structuredClone(this.store.put(spec));
  }

  async update(resourceVersion: string, spec: LeaseSpecFields): Promise<LeaseRecord> {
    await this.#gate();
    this.store.beforeUpdate?.();
    if (!this.store.record || this.store.record.resourceVersion !== resourceVersion) throw conflict('update lease');
    return structuredClone(this.store.put(spec));
  }
}
