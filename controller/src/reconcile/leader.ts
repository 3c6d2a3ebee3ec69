// Leader election on a coordination.k8s.io/v1 Lease. One replica holds the Lease and does the
// leader-only work (status, events, trust bundles); the others poll it and take over when it is
// released or stops being renewed.
//
// Expiry is judged by each candidate's own monotonic clock: a Lease counts as expired when its
// resourceVersion has not changed for leaseDuration since this process first saw that version.
// Wall-clock times written into the Lease (renewTime, acquireTime) are for humans and tools, never
// compared across machines, so clock skew between nodes cannot produce two leaders.
//
// Safety margins: a leader gives up when no renew succeeded for renewDeadline (< leaseDuration),
// so it stops writing before any standby can consider the Lease expired. Every write is an
// optimistic update on resourceVersion: of two candidates racing for a free Lease exactly one
// update succeeds, the other gets 409.
import { MandateError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { systemScheduler, type Scheduler, type TimerHandle } from './scheduler.ts';

/** The Lease spec fields (coordination.k8s.io/v1); times are RFC 3339 MicroTime strings. */
export interface LeaseSpecFields {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
  readonly preferredHolder?: string;
  readonly strategy?: string;
}

export interface LeaseRecord {
  readonly resourceVersion: string;
  readonly spec: LeaseSpecFields;
}

/** The three calls election needs on one named Lease. */
export interface LeaseApi {
  /** The Lease, or undefined when it does not exist. */
  get(): Promise<LeaseRecord | undefined>;
  /** Creates it; fails (KUBE_CONFLICT) when it exists. */
  create(spec: LeaseSpecFields): Promise<LeaseRecord>;
  /** Replaces the spec if the Lease is still at `resourceVersion`; fails (KUBE_CONFLICT) otherwise. */
  update(resourceVersion: string, spec: LeaseSpecFields): Promise<LeaseRecord>;
}

export interface LeaderElectorOptions {
  /** This replica's holder identity (the pod name). */
  readonly identity: string;
  readonly api: LeaseApi;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly scheduler?: Scheduler;
  readonly log?: Logger;
  /** Leader-only work starts here. */
  readonly onStartedLeading?: () => void | Promise<void>;
  /** Leader-only work must stop here; stop() waits for it before releasing the Lease. */
  readonly onStoppedLeading?: () => void | Promise<void>;
  /** Another holder (or none: '') was observed. */
  readonly onNewLeader?: (identity: string) => void;
}

/** Candidates retry a little later than the period, spread so they do not poll in lockstep. */
const CANDIDATE_JITTER = 1.2;

/** MicroTime as the API server writes it: six fractional digits, UTC. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

type Attempt = 'acquired' | 'held' | 'failed';

export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  readonly #scheduler: Scheduler;
  readonly #log: Logger;
  #running = false;
  #leader = false;
  #tickTimer: TimerHandle | undefined;
  #deadlineTimer: TimerHandle | undefined;
  #renewedAt = 0;
  /** The newest Lease version seen, and when (monotonic) this process first saw it. */
  #observed: { record: LeaseRecord; at: number } | undefined;
  #observedHolder: string | undefined;
  #attempt: Promise<void> | undefined;
  #attemptSeq = 0;
  #callbacks: Promise<void> = Promise.resolve();
  #transitions = 0;

  constructor(options: LeaderElectorOptions) {
    const { leaseDurationMs, renewDeadlineMs, retryPeriodMs } = options;
    if (!(retryPeriodMs > 0 && renewDeadlineMs > retryPeriodMs * CANDIDATE_JITTER && leaseDurationMs > renewDeadlineMs)) {
      throw new MandateError(
        'CONFIG_INVALID',
        `leader election needs leaseDuration > renewDeadline > ${CANDIDATE_JITTER} × retryPeriod (got ${leaseDurationMs} ms, ${renewDeadlineMs} ms, ${retryPeriodMs} ms)`,
      );
    }
    if (!options.identity) throw new MandateError('CONFIG_INVALID', 'leader election needs a holder identity');
    this.#o = options;
    this.#scheduler = options.scheduler ?? systemScheduler();
    this.#log = (options.log ?? silentLogger).child({ component: 'leader', identity: options.identity });
  }

  isLeader(): boolean {
    return this.#leader;
  }

  /** The holder last observed in the Lease ('' = released), or undefined before the first read. */
  currentLeader(): string | undefined {
    return this.#observedHolder;
  }

  /** Times this replica became leader. */
  get transitions(): number {
    return this.#transitions;
  }

  /** Starts competing for the Lease. Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  /**
   * Stops competing. A leader first stops its leader-only work (onStoppedLeading, awaited), then
   * releases the Lease so a standby takes over at its next poll instead of after leaseDuration.
   */
  async stop(): Promise<void> {
    if (!this.#running) {
      await this.#callbacks;
      return;
    }
    this.#running = false;
    this.#scheduler.clearTimeout(this.#tickTimer);
    this.#tickTimer = undefined;
    await this.#attempt;
    const wasLeader = this.#leader;
    if (wasLeader) this.#loseLeadership('stopping', 'info');
    await this.#callbacks;
    if (wasLeader) await this.#release();
  }

  #schedule(ms: number): void {
    if (!this.#running) return;
    this.#tickTimer = this.#scheduler.setTimeout(() => {
      this.#tickTimer = undefined;
      this.#attempt = this.#tick().finally(() => {
        this.#attempt = undefined;
      });
    }, ms);
  }

  async #tick(): Promise<void> {
    const result = await this.#boundedAttempt();
    if (!this.#running) return;
    if (result === 'acquired') {
      this.#renewedAt = this.#scheduler.now();
      this.#armDeadline();
      if (!this.#leader) {
        this.#leader = true;
        this.#transitions++;
        this.#log.info('became leader');
        this.#callback(this.#o.onStartedLeading);
      }
    } else if (result === 'held' && this.#leader) {
      // Someone else holds the Lease: whatever our timers say, we are not the leader.
      this.#loseLeadership('lease is held by another replica');
    } else if (this.#leader && this.#scheduler.now() - this.#renewedAt >= this.#o.renewDeadlineMs) {
      this.#loseLeadership(`no successful renew for ${this.#o.renewDeadlineMs} ms`);
    }
    const period = this.#o.retryPeriodMs;
    if (this.#leader) {
      this.#schedule(period);
      return;
    }
    // A candidate polls every jittered period, but wakes right when the Lease it watches would
    // expire if nobody renews it, so a dead leader is replaced without waiting another period.
    let next = period * (1 + CANDIDATE_JITTER * this.#scheduler.random());
    const untilExpiry = this.#untilExpiry();
    if (result === 'held' && untilExpiry !== undefined && untilExpiry < next) next = untilExpiry + 1;
    this.#schedule(next);
  }

  /** Milliseconds until the observed Lease expires on this replica's clock (if nobody renews it). */
  #untilExpiry(): number | undefined {
    const observed = this.#observed;
    if (!observed) return undefined;
    const durationMs = (observed.record.spec.leaseDurationSeconds ?? Math.ceil(this.#o.leaseDurationMs / 1000)) * 1000;
    return Math.max(0, observed.at + durationMs - this.#scheduler.now());
  }

  // An attempt that hangs (a black-holed connection) counts as failed after renewDeadline, so
  // the loop, and the deadline check with it, keep going. A late answer is ignored.
  #boundedAttempt(): Promise<Attempt> {
    const seq = ++this.#attemptSeq;
    return this.#bounded(this.#tryAcquireOrRenew(seq), 'failed');
  }

  async #bounded<T>(work: Promise<T>, onTimeout: T): Promise<T> {
    let timer: TimerHandle | undefined;
    const timeout = new Promise<T>((resolve) => {
      timer = this.#scheduler.setTimeout(() => resolve(onTimeout), this.#o.renewDeadlineMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      this.#scheduler.clearTimeout(timer);
    }
  }

  async #tryAcquireOrRenew(seq: number): Promise<Attempt> {
    const id = this.#o.identity;
    const now = microTime(this.#scheduler.wallTime());
    const durationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    try {
      const current = await this.#o.api.get();
      if (seq !== this.#attemptSeq) return 'failed';
      if (!current) {
        const created = await this.#o.api.create({ holderIdentity: id, leaseDurationSeconds: durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 });
        if (seq === this.#attemptSeq) this.#observe(created);
        return seq === this.#attemptSeq ? 'acquired' : 'failed';
      }
      this.#observe(current);
      const holder = current.spec.holderIdentity ?? '';
      if (holder !== '' && holder !== id && !this.#expired(current)) return 'held';
      const mine = holder === id;
      const transitions = current.spec.leaseTransitions ?? 0;
      const next: LeaseSpecFields = {
        ...current.spec,
        holderIdentity: id,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine ? (current.spec.acquireTime ?? now) : now,
        renewTime: now,
        leaseTransitions: mine ? transitions : transitions + 1,
      };
      const updated = await this.#o.api.update(current.resourceVersion, next);
      if (seq !== this.#attemptSeq) return 'failed';
      this.#observe(updated);
      return 'acquired';
    } catch (err) {
      // 409: another candidate won the race or renewed first; anything else: try again next period.
      this.#log.debug('lease attempt failed', { err });
      return 'failed';
    }
  }

  #observe(record: LeaseRecord): void {
    if (this.#observed?.record.resourceVersion !== record.resourceVersion) {
      this.#observed = { record, at: this.#scheduler.now() };
    }
    const holder = record.spec.holderIdentity ?? '';
    if (holder !== this.#observedHolder) {
      this.#observedHolder = holder;
      if (holder !== this.#o.identity) this.#log.info('observed leader', { leader: holder || '(none)' });
      try {
        this.#o.onNewLeader?.(holder);
      } catch (err) {
        this.#log.error('onNewLeader threw', { err });
      }
    }
  }

  #expired(record: LeaseRecord): boolean {
    if (this.#observed?.record.resourceVersion !== record.resourceVersion) return false;
    return this.#untilExpiry() === 0;
  }

  // Timers may fire a little before the monotonic clock says the time is up (they run on the
  // event loop's coarser clock), so an early wake-up sleeps again for the rest.
  #armDeadline(delayMs: number = this.#o.renewDeadlineMs): void {
    this.#scheduler.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = this.#scheduler.setTimeout(() => {
      this.#deadlineTimer = undefined;
      if (!this.#leader) return;
      const left = this.#renewedAt + this.#o.renewDeadlineMs - this.#scheduler.now();
      if (left > 0) this.#armDeadline(Math.max(1, Math.ceil(left)));
      else this.#loseLeadership(`no successful renew for ${this.#o.renewDeadlineMs} ms`);
    }, delayMs);
  }

  #loseLeadership(why: string, level: 'info' | 'warn' = 'warn'): void {
    if (!this.#leader) return;
    this.#leader = false;
    this.#scheduler.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    this.#log[level]('stopped leading', { why });
    this.#callback(this.#o.onStoppedLeading);
  }

  // Callbacks run one after another, in order, so a quick lose-then-win cannot start leader work
  // before the previous round has stopped.
  #callback(fn: (() => void | Promise<void>) | undefined): void {
    if (!fn) return;
    this.#callbacks = this.#callbacks.then(async () => {
      try {
        await fn();
      } catch (err) {
        this.#log.error('leader callback failed', { err });
      }
    });
  }

  // Writes an empty holder with a 1 s duration; a 409 means the Lease moved on already (another
  // holder, or our last renew raced this), so it is read once more and released only if still ours.
  async #release(): Promise<void> {
    const now = microTime(this.#scheduler.wallTime());
    // Bounded like every attempt: a stop must finish even when the API server does not answer.
    const gone = Symbol('timeout');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const record = attempt === 0 && this.#observed ? this.#observed.record : await this.#bounded<LeaseRecord | undefined | typeof gone>(this.#o.api.get(), gone);
        if (record === gone) break;
        if (!record || record.spec.holderIdentity !== this.#o.identity) return;
        const released = await this.#bounded<LeaseRecord | typeof gone>(
          this.#o.api.update(record.resourceVersion, { ...record.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now }),
          gone,
        );
        if (released === gone) break;
        this.#observe(released);
        this.#log.info('released lease');
        return;
      } catch (err) {
        this.#log.debug('lease release failed', { err, attempt });
      }
    }
    this.#log.warn('could not release the lease; standbys take over when it expires');
  }
}
