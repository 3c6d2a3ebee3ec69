// Kubernetes Events for status changes, without spam. Two layers keep a stuck error quiet:
// events are only emitted on a status transition (statusEvents in status.ts), and this recorder
// folds repeats of the same event on the same object (a flapping object, a retried write, a
// failover replaying a transition) into one Event whose series count grows, patched at most once
// per series interval. Emitting never fails the reconcile: Events are best-effort by design.
import { createHash, randomBytes } from 'node:crypto';
import { silentLogger, type Logger } from '../log.ts';
import { systemScheduler, type Scheduler } from './scheduler.ts';
import type { StatusEvent } from './status.ts';

export interface EventRegarding {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
}

export interface NewEvent {
  readonly namespace: string;
  readonly name: string;
  readonly regarding: EventRegarding;
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly note: string;
  readonly action: string;
  /** RFC 3339 MicroTime. */
  readonly eventTime: string;
  readonly reportingController: string;
  readonly reportingInstance: string;
}

/** Where events go: events.k8s.io/v1 in a cluster, a list in tests. */
export interface EventSink {
  create(event: NewEvent): Promise<void>;
  /** Records that the event named `name` happened `count` times, the last at `lastObservedTime`. */
  updateSeries(namespace: string, name: string, count: number, lastObservedTime: string): Promise<void>;
}

export type DedupDecision = { readonly kind: 'create' } | { readonly kind: 'series'; readonly name: string; readonly count: number } | { readonly kind: 'drop' };

export interface DedupOptions {
  /** A repeat later than this after the last occurrence starts a new Event. Default 15 min. */
  readonly windowMs?: number;
  /** Least time between two series updates of one Event. Default 60 s. */
  readonly seriesIntervalMs?: number;
  /** Entries remembered; the oldest are forgotten first. Default 4096. */
  readonly maxEntries?: number;
}

interface Entry {
  name: string;
  count: number;
  lastSeen: number;
  lastSent: number;
}

/** The pure half: given a dedup key and the time, create, count in a series, or drop. */
export class EventDeduper {
  readonly #windowMs: number;
  readonly #seriesIntervalMs: number;
  readonly #maxEntries: number;
  // Insertion order doubles as age order: an entry is re-inserted whenever it is seen.
  readonly #entries = new Map<string, Entry>();

  constructor(options: DedupOptions = {}) {
    this.#windowMs = options.windowMs ?? 15 * 60_000;
    this.#seriesIntervalMs = options.seriesIntervalMs ?? 60_000;
    this.#maxEntries = Math.max(1, options.maxEntries ?? 4096);
  }

  get size(): number {
    return this.#entries.size;
  }

  decide(key: string, now: number): DedupDecision {
    const entry = this.#entries.get(key);
    if (!entry || now - entry.lastSeen > this.#windowMs) return { kind: 'create' };
    entry.count++;
    entry.lastSeen = now;
    this.#touch(key, entry);
    if (now - entry.lastSent < this.#seriesIntervalMs) return { kind: 'drop' };
    entry.lastSent = now;
    return { kind: 'series', name: entry.name, count: entry.count };
  }

  created(key: string, name: string, now: number): void {
    this.#touch(key, { name, count: 1, lastSeen: now, lastSent: now });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }

  /** Forgets an event that could not be delivered, so its next occurrence is tried afresh. */
  forget(key: string): void {
    this.#entries.delete(key);
  }

  #touch(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
  }
}

export interface EventRecorderOptions extends DedupOptions {
  readonly sink: EventSink;
  /** events.k8s.io reportingController. */
  readonly controller?: string;
  /** events.k8s.io reportingInstance: this replica. */
  readonly instance: string;
  readonly scheduler?: Scheduler;
  readonly log?: Logger;
}

const MAX_NOTE_BYTES = 1024;

function clipBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = text.slice(0, max);
  while (Buffer.byteLength(out) > max - 3) out = out.slice(0, -1);
  return `${out}…`;
}

function eventName(objectName: string): string {
  // Like kubectl's: the object's name and a unique suffix; within the 253-character name limit.
  return `${objectName.slice(0, 200)}.${randomBytes(8).toString('hex')}`;
}

export class EventRecorder {
  readonly #sink: EventSink;
  readonly #controller: string;
  readonly #instance: string;
  readonly #scheduler: Scheduler;
  readonly #log: Logger;
  readonly #dedup: EventDeduper;

  constructor(options: EventRecorderOptions) {
    this.#sink = options.sink;
    this.#controller = options.controller ?? 'mandate.dev/controller';
    this.#instance = options.instance.slice(0, 128);
    this.#scheduler = options.scheduler ?? systemScheduler();
    this.#log = (options.log ?? silentLogger).child({ component: 'events' });
    this.#dedup = new EventDeduper(options);
  }

  /** Records `event` about `regarding`; resolves when done or given up. Never rejects. */
  async emit(regarding: EventRegarding, event: StatusEvent, action: string): Promise<void> {
    const note = clipBytes(event.note, MAX_NOTE_BYTES);
    const key = createHash('sha256')
      .update([regarding.kind, regarding.namespace, regarding.name, regarding.uid ?? '', event.type, event.reason, note].join('\0'))
      .digest('hex');
    const now = this.#scheduler.now();
    const decision = this.#dedup.decide(key, now);
    const eventTime = this.#scheduler.wallTime().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    try {
      if (decision.kind === 'drop') return;
      if (decision.kind === 'series') {
        await this.#sink.updateSeries(regarding.namespace, decision.name, decision.count, eventTime);
        return;
      }
      const name = eventName(regarding.name);
      this.#dedup.created(key, name, now);
      await this.#sink.create({
        namespace: regarding.namespace,
        name,
        regarding,
        type: event.type,
        reason: event.reason.slice(0, 128),
        note,
        action: action.slice(0, 128),
        eventTime,
        reportingController: this.#controller,
        reportingInstance: this.#instance,
      });
    } catch (err) {
      this.#dedup.forget(key);
      this.#log.warn('could not record event', { reason: event.reason, object: `${regarding.kind} ${regarding.namespace}/${regarding.name}`, err });
    }
  }
}
