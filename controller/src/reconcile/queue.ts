// A keyed work queue with its own workers. Informer and store handlers only add keys; the
// handler reads the newest state when the key comes up, so ten changes to one object while it
// waits cost one run. Guarantees:
// - a key waiting in the queue is there once, however often it is added;
// - a key is never handled by two workers at once: added while running, it runs once more after;
// - a retriable failure retries the key after a per-key exponential backoff with jitter, and a
//   success forgets the failure count; a terminal failure (a MandateError that is not retriable)
//   is logged and counted, never retried: only a new add (a changed input, a resync) brings it back;
// - at most `concurrency` handlers run at a time;
// - shutDown() stops accepting keys, cancels pending retries and resolves once the keys already
//   queued and running have been handled.
import { asMandateError, type MandateError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { jittered, nominalDelay } from '../kube/backoff.ts';
import { systemScheduler, type Scheduler, type TimerHandle } from './scheduler.ts';

/** What a handler may ask for besides success: to look at the key again later (e.g. an expiry). */
export interface ReconcileResult {
  readonly requeueAfterMs?: number;
}

export type Handler<K extends string> = (key: K) => Promise<ReconcileResult | void>;

export type OutcomeKind = 'success' | 'retry' | 'terminal';

export interface Outcome<K extends string> {
  readonly key: K;
  readonly outcome: OutcomeKind;
  readonly error?: MandateError;
  /** Consecutive failures of this key so far (0 after a success or a terminal error). */
  readonly failures: number;
  readonly durationMs: number;
}

export interface QueueStats {
  /** Keys waiting for a worker. */
  readonly queued: number;
  /** Keys being handled now. */
  readonly processing: number;
  /** Keys waiting for a timer (backoff or requeueAfter). */
  readonly delayed: number;
  readonly succeeded: number;
  readonly retried: number;
  readonly terminal: number;
}

/** Per-key retry delays: initialMs·2^(failures-1) capped at maxMs, drawn from [half, whole). */
export interface QueueBackoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const defaultQueueBackoff: QueueBackoff = Object.freeze({ initialMs: 200, maxMs: 60_000 });

/** The delay before retrying after `failures` consecutive failures (1 = the first). */
export function retryDelay(failures: number, random: number, backoff: QueueBackoff = defaultQueueBackoff): number {
  return jittered(nominalDelay(Math.max(1, failures) - 1, backoff.initialMs, backoff.maxMs), () => random);
}

export interface WorkQueueOptions<K extends string> {
  /** For logs. */
  readonly name: string;
  readonly handler: Handler<K>;
  /** Handlers running at once. Default 4. */
  readonly concurrency?: number;
  readonly backoff?: QueueBackoff;
  readonly scheduler?: Scheduler;
  readonly log?: Logger;
  /** Called after every handler run, for metrics. Must not throw. */
  readonly onOutcome?: (outcome: Outcome<K>) => void;
}

/** First-in first-out without Array#shift's O(n) per take. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

export class WorkQueue<K extends string> {
  readonly #name: string;
  readonly #handler: Handler<K>;
  readonly #concurrency: number;
  readonly #backoff: QueueBackoff;
  readonly #scheduler: Scheduler;
  readonly #log: Logger;
  readonly #onOutcome: ((outcome: Outcome<K>) => void) | undefined;

  readonly #fifo = new Fifo<K>();
  /** Keys that need a run: waiting in the fifo, or re-added while running. */
  readonly #dirty = new Set<K>();
  readonly #processing = new Set<K>();
  readonly #delayed = new Map<K, { at: number; timer: TimerHandle }>();
  readonly #failures = new Map<K, number>();
  #shuttingDown = false;
  #idleWaiters: (() => void)[] = [];
  #succeeded = 0;
  #retried = 0;
  #terminal = 0;

  constructor(options: WorkQueueOptions<K>) {
    this.#name = options.name;
    this.#handler = options.handler;
    this.#concurrency = Math.max(1, Math.floor(options.concurrency ?? 4));
    this.#backoff = options.backoff ?? defaultQueueBackoff;
    this.#scheduler = options.scheduler ?? systemScheduler();
    this.#log = (options.log ?? silentLogger).child({ component: 'workqueue', queue: options.name });
    this.#onOutcome = options.onOutcome;
  }

  get name(): string {
    return this.#name;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Queues `key` unless it is already waiting; a running key runs once more when it finishes. */
  add(key: K): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    this.#fifo.push(key);
    this.#pump();
  }

  /** Queues `key` after `ms`; an earlier pending delay for the same key wins. */
  addAfter(key: K, ms: number): void {
    if (this.#shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = this.#scheduler.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending && pending.at <= at) return;
    this.#scheduler.clearTimeout(pending?.timer);
    const timer = this.#scheduler.setTimeout(() => {
      const current = this.#delayed.get(key);
      if (current?.timer !== timer) return;
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { at, timer });
  }

  /** Counts a failure of `key` and queues it again after its backoff delay. */
  addRateLimited(key: K): void {
    if (this.#shuttingDown) return;
    const failures = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, failures);
    this.addAfter(key, retryDelay(failures, this.#scheduler.random(), this.#backoff));
  }

  /** Forgets the failures of `key`: its next failure backs off from the start. */
  forget(key: K): void {
    this.#failures.delete(key);
  }

  /** Consecutive failures of `key` so far. */
  numRequeues(key: K): number {
    return this.#failures.get(key) ?? 0;
  }

  stats(): QueueStats {
    return {
      queued: this.#fifo.length,
      processing: this.#processing.size,
      delayed: this.#delayed.size,
      succeeded: this.#succeeded,
      retried: this.#retried,
      terminal: this.#terminal,
    };
  }

  /** Resolves when no key is queued or running (delayed keys do not count). */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stops accepting keys and cancels delayed ones; resolves when the keys already queued and
   * running have been handled. Idempotent.
   */
  shutDown(): Promise<void> {
    this.#shuttingDown = true;
    for (const { timer } of this.#delayed.values()) this.#scheduler.clearTimeout(timer);
    this.#delayed.clear();
    return this.whenIdle();
  }

  #isIdle(): boolean {
    return this.#fifo.length === 0 && this.#processing.size === 0;
  }

  #pump(): void {
    while (this.#processing.size < this.#concurrency) {
      const key = this.#fifo.shift();
      if (key === undefined) break;
      this.#dirty.delete(key);
      // This run covers a pending retry of the same key; if it fails, a fresh delay is set.
      const pending = this.#delayed.get(key);
      if (pending) {
        this.#scheduler.clearTimeout(pending.timer);
        this.#delayed.delete(key);
      }
      this.#processing.add(key);
      void this.#run(key);
    }
    if (this.#isIdle()) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  async #run(key: K): Promise<void> {
    const started = this.#scheduler.now();
    let outcome: OutcomeKind = 'success';
    let error: MandateError | undefined;
    try {
      const result = await this.#handler(key);
      this.#failures.delete(key);
      this.#succeeded++;
      const after = result?.requeueAfterMs;
      if (after !== undefined && Number.isFinite(after)) this.addAfter(key, Math.max(after, 0));
    } catch (err) {
      error = asMandateError(err);
      if (error.retriable) {
        outcome = 'retry';
        this.#retried++;
        this.addRateLimited(key);
        const failures = this.numRequeues(key);
        const level = error.code === 'KUBE_CONFLICT' || failures < 3 ? 'debug' : 'warn';
        this.#log[level]('reconcile failed; will retry', { key, code: error.code, err: error.message, failures });
      } else {
        outcome = 'terminal';
        this.#terminal++;
        this.#failures.delete(key);
        this.#log.error('reconcile failed; not retrying until the input changes', { key, code: error.code, err: error.message });
      }
    } finally {
      this.#processing.delete(key);
      if (this.#dirty.has(key)) this.#fifo.push(key);
      try {
        this.#onOutcome?.({
          key,
          outcome,
          ...(error ? { error } : {}),
          failures: this.numRequeues(key),
          durationMs: this.#scheduler.now() - started,
        });
      } catch (err) {
        this.#log.error('outcome hook threw', { err });
      }
      this.#pump();
    }
  }
}
