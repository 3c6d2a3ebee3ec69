// Jittered exponential backoff for reconnecting to the API server. After an outage every replica
// and every informer reconnects at once; the jitter spreads them so the recovering server is not
// hit in lockstep, and the floor (half the nominal delay) keeps a failing server from being
// hammered by an unlucky run of small random numbers.

export interface BackoffOptions {
  /** First nominal delay. Default 250 ms. */
  readonly initialMs?: number;
  /** Cap on the nominal delay. Default 10 s: long enough to spare a struggling server, short
   *  enough that a policy change made after an outage is picked up within seconds of recovery. */
  readonly maxMs?: number;
  /** Uniform [0, 1); injectable for tests. */
  readonly random?: () => number;
}

export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 250, maxMs: 10_000 });

/** The n-th (0-based) nominal delay: initial·2ⁿ, capped. */
export function nominalDelay(attempt: number, initialMs: number, maxMs: number): number {
  // 2^n overflows to Infinity long after it passed any sane cap; Math.min handles that.
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt));
}

/** A delay drawn from [nominal/2, nominal). */
export function jittered(nominal: number, random: () => number): number {
  const r = Math.min(Math.max(random(), 0), 1);
  return nominal / 2 + (nominal / 2) * r;
}

export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#initialMs = options.initialMs ?? DEFAULT_BACKOFF.initialMs;
    this.#maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
    this.#random = options.random ?? Math.random;
    if (!(this.#initialMs > 0) || !(this.#maxMs >= this.#initialMs)) throw new RangeError('backoff needs 0 < initialMs <= maxMs');
  }

  /** The delay before the next attempt; each call doubles the nominal delay up to the cap. */
  next(): number {
    const delay = jittered(nominalDelay(this.#attempt, this.#initialMs, this.#maxMs), this.#random);
    if (this.#attempt < 64) this.#attempt++;
    return delay;
  }

  /** Called after a success: the next failure starts from the initial delay again. */
  reset(): void {
    this.#attempt = 0;
  }

  /** Failures since the last reset. */
  get failures(): number {
    return this.#attempt;
  }
}
