// Coalesces a burst of informer events into one publish. The window opens at the first event and
// is not extended by later ones, so a cluster that never stops changing still publishes every
// `delayMs`: the latency from an API change to the published snapshot is bounded by the window
// plus one compile, which is what keeps "a policy change reaches every replica within 1 s" true.

export class Coalescer {
  readonly #delayMs: number;
  readonly #run: (waitedMs: number) => void;
  #timer: NodeJS.Timeout | undefined;
  #openedAt = 0;

  /** `run` gets how long the oldest coalesced event waited; it must not throw (errors are its own). */
  constructor(delayMs: number, run: (waitedMs: number) => void) {
    if (!(delayMs >= 0)) throw new RangeError('delayMs must be >= 0');
    this.#delayMs = delayMs;
    this.#run = run;
  }

  /** Notes an event; the first one of a window schedules the run. */
  trigger(): void {
    if (this.#timer !== undefined) return;
    this.#openedAt = Date.now();
    this.#timer = setTimeout(() => this.flush(), this.#delayMs);
  }

  /** Runs now if a run is pending. */
  flush(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#run(Date.now() - this.#openedAt);
  }

  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  get pending(): boolean {
    return this.#timer !== undefined;
  }
}
