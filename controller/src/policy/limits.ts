// Rate limits and budgets share one structure: a sliding window of `slots` buckets per key that
// sums weights (1 per call for a rate limit, the parameter's value for a budget).
//
// Why a bucketed sliding window rather than GCRA: GCRA (a token bucket) is O(1) with one number
// per key, but after an idle period it admits a full burst and then keeps refilling, so up to
// about twice the limit can pass within one window, and that breaks the budget contract "the sum
// over the window may not exceed max". The bucketed window counts every bucket that overlaps
// (now - per, now], so no window of length `per` ever holds more than the limit; the price is that
// capacity comes back up to one bucket (per / slots) late. Each check is O(slots) with slots
// fixed (16), and each key holds slots + 1 numbers.
//
// Memory is bounded: a key whose window has fully passed is idle and swept (a few per call, all
// when the state is full); when all `maxKeys` keys are live, a new key is refused (fail closed:
// the call is denied as rate-limited) instead of evicting a live key, which would forget calls.
// Time is always passed in: the state never reads a clock.

export const DEFAULT_MAX_KEYS = 100_000;
export const WINDOW_SLOTS = 16;
/** Float sums of budget amounts (0.1 + 0.2) must not deny a call that lands exactly on max. */
const EPSILON = 1e-9;

export interface WindowSpec {
  /** Window length in milliseconds (> 0). */
  readonly windowMs: number;
  /** Most weight the window may hold. */
  readonly capacity: number;
}

export interface LimitCheck {
  readonly ok: boolean;
  /** Weight already in the window before this call. */
  readonly used: number;
  /** When `ok` is false: how long until enough weight has left the window (0 if it never will). */
  readonly retryAfterMs: number;
  /** The state had no room for a new key. */
  readonly full: boolean;
}

export interface LimiterStats {
  readonly keys: number;
  readonly sweptIdle: number;
  readonly refusedFull: number;
}

export interface Charge {
  readonly key: string;
  readonly spec: WindowSpec;
  readonly weight: number;
}

interface Window {
  windowMs: number;
  slotMs: number;
  /** Absolute slot number of `slots[head]`. */
  headSlot: number;
  head: number;
  slots: Float64Array;
  total: number;
  lastMs: number;
}

export interface LimiterOptions {
  readonly maxKeys?: number;
}

export class LimiterState {
  readonly maxKeys: number;
  private readonly windows = new Map<string, Window>();
  private sweptIdle = 0;
  private refusedFull = 0;
  private lastFullSweepMs = Number.NEGATIVE_INFINITY;

  constructor(options: LimiterOptions = {}) {
    this.maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new RangeError('maxKeys must be a positive integer');
  }

  get size(): number {
    return this.windows.size;
  }

  stats(): LimiterStats {
    return { keys: this.windows.size, sweptIdle: this.sweptIdle, refusedFull: this.refusedFull };
  }

  /** Would `weight` more fit into the key's window at `nowMs`? Changes no counts. */
  check(key: string, spec: WindowSpec, weight: number, nowMs: number): LimitCheck {
    const window = this.current(key, spec, nowMs);
    if (!window) {
      if (!this.hasRoom(nowMs, 1)) {
        this.refusedFull++;
        return { ok: false, used: 0, retryAfterMs: 1_000, full: true };
      }
      const ok = weight <= spec.capacity + EPSILON;
      return { ok, used: 0, retryAfterMs: 0, full: false };
    }
    const ok = window.total + weight <= spec.capacity + EPSILON;
    return { ok, used: window.total, retryAfterMs: ok ? 0 : retryAfter(window, spec.capacity - weight, nowMs), full: false };
  }

  /**
   * Adds every charge, or none: false when the state has no room for the new keys among them
   * (the caller then denies the call). Call only after `check` said ok for each charge.
   */
  commit(charges: readonly Charge[], nowMs: number): boolean {
    this.sweepSome(nowMs, 2);
    const windows = charges.map((charge) => this.current(charge.key, charge.spec, nowMs));
    const fresh = windows.filter((w) => w === undefined).length;
    if (fresh > 0 && !this.hasRoom(nowMs, fresh)) {
      this.refusedFull++;
      return false;
    }
    for (const [i, { key, spec, weight }] of charges.entries()) {
      const window = windows[i] ?? this.windows.get(key) ?? newWindow(spec.windowMs, nowMs);
      this.windows.delete(key); // re-insert: Map order is then least recently used first
      window.slots[window.head] = (window.slots[window.head] ?? 0) + weight;
      window.total += weight;
      window.lastMs = Math.max(window.lastMs, nowMs);
      this.windows.set(key, window);
    }
    return true;
  }

  /** The key's window advanced to `nowMs`, or undefined if the key has none (or it was reshaped). */
  private current(key: string, spec: WindowSpec, nowMs: number): Window | undefined {
    const window = this.windows.get(key);
    if (!window) return undefined;
    if (window.windowMs !== spec.windowMs) {
      // The rule's window changed length: the old buckets no longer line up, start afresh.
      this.windows.delete(key);
      return undefined;
    }
    advance(window, nowMs);
    return window;
  }

  private hasRoom(nowMs: number, keys: number): boolean {
    if (this.windows.size + keys <= this.maxKeys) return true;
    // A full sweep is O(keys); at most one per second of decision time keeps a full state cheap.
    if (nowMs - this.lastFullSweepMs >= 1_000) {
      this.lastFullSweepMs = nowMs;
      this.sweepSome(nowMs, Number.POSITIVE_INFINITY);
    }
    return this.windows.size + keys <= this.maxKeys;
  }

  private sweepSome(nowMs: number, budget: number): void {
    let seen = 0;
    for (const [key, window] of this.windows) {
      if (seen++ >= budget) return;
      if (isIdle(window, nowMs)) {
        this.windows.delete(key);
        this.sweptIdle++;
      } else if (budget !== Number.POSITIVE_INFINITY) {
        // Least recently used first: behind a live key, later keys are newer.
        return;
      }
    }
  }
}

export function createLimiterState(options?: LimiterOptions): LimiterState {
  return new LimiterState(options);
}

function newWindow(windowMs: number, nowMs: number): Window {
  const slotMs = windowMs / WINDOW_SLOTS;
  return {
    windowMs,
    slotMs,
    headSlot: Math.floor(nowMs / slotMs),
    head: 0,
    slots: new Float64Array(WINDOW_SLOTS + 1),
    total: 0,
    lastMs: nowMs,
  };
}

/**
 * Moves the head to the slot of `nowMs`, clearing slots that fell out. The window then covers
 * slots headSlot - WINDOW_SLOTS .. headSlot, which always include (nowMs - windowMs, nowMs].
 * Time that goes backwards (a test, a clock step) counts into the current head slot.
 */
function advance(window: Window, nowMs: number): void {
  const slot = Math.floor(nowMs / window.slotMs);
  const steps = slot - window.headSlot;
  if (steps <= 0) return;
  const size = window.slots.length;
  if (steps >= size) {
    window.slots.fill(0);
    window.head = 0;
  } else {
    for (let i = 0; i < steps; i++) {
      window.head = (window.head + 1) % size;
      window.slots[window.head] = 0;
    }
  }
  window.headSlot = slot;
  let total = 0;
  for (const value of window.slots) total += value;
  window.total = total;
}

function isIdle(window: Window, nowMs: number): boolean {
  return nowMs >= window.lastMs + window.windowMs + window.slotMs;
}

/** Time until the oldest slots have left the window and the total is at most `target`. */
function retryAfter(window: Window, target: number, nowMs: number): number {
  if (target < -EPSILON) return 0;
  const size = window.slots.length;
  let remaining = window.total;
  for (let age = size - 1; age >= 0; age--) {
    const index = (window.head - age + size * 2) % size;
    remaining -= window.slots[index] ?? 0;
    if (remaining <= target + EPSILON) {
      // Slot headSlot - age leaves the window once the head reaches headSlot - age + size.
      const leavesAt = (window.headSlot - age + size) * window.slotMs;
      return Math.max(0, Math.ceil(leavesAt - nowMs));
    }
  }
  return 0;
}
