// Time, timers and randomness as one injected dependency, so the queue and the leader elector are
// deterministic in unit tests (a manual scheduler advances time; nothing sleeps).
import { performance } from 'node:perf_hooks';

export interface TimerHandle {
  readonly id: number;
}

export interface Scheduler {
  /** Monotonic milliseconds: only differences mean anything. Immune to wall-clock jumps. */
  now(): number;
  /** Wall-clock time, for timestamps written to the API server. */
  wallTime(): Date;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  /** Uniform in [0, 1); jitter only, never security. */
  random(): number;
}

// Node's timer overflows above 2^31-1 ms and then fires at once; longer delays are clamped.
const MAX_TIMER_MS = 2 ** 31 - 1;

export function systemScheduler(): Scheduler {
  const timers = new Map<number, NodeJS.Timeout>();
  let next = 1;
  return {
    now: () => performance.now(),
    wallTime: () => new Date(),
    setTimeout(fn, ms) {
      const id = next++;
      const t = setTimeout(() => {
        timers.delete(id);
        fn();
      }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
      timers.set(id, t);
      return { id };
    },
    clearTimeout(handle) {
      if (!handle) return;
      clearTimeout(timers.get(handle.id));
      timers.delete(handle.id);
    },
    random: () => Math.random(),
  };
}
