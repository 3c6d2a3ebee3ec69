// Load numbers from a busy machine are noise. Before measuring, the benchmark waits (bounded)
// until the CPUs have been mostly idle for a few consecutive seconds, and the report says how
// idle they were, so a run on a shared machine is recognisable as such.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

export interface CpuSample {
  readonly idle: number;
  readonly total: number;
}

export function sampleCpu(): CpuSample {
  let idle = 0;
  let total = 0;
  for (const c of cpus()) {
    idle += c.times.idle;
    total += c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
  }
  return { idle, total };
}

/** Share of CPU time spent idle between two samples (1 when nothing ran). */
export function idleShare(a: CpuSample, b: CpuSample): number {
  const total = b.total - a.total;
  return total > 0 ? (b.idle - a.idle) / total : 1;
}

export interface QuietResult {
  readonly quiet: boolean;
  /** Idle share of the last sampled second. */
  readonly idle: number;
  readonly waitedSeconds: number;
}

/** Resolves once `seconds` consecutive one-second samples are at least `idleShare` idle, or at `maxSeconds`. */
export async function waitForQuiet(options: { maxSeconds: number; minIdle?: number; seconds?: number }): Promise<QuietResult> {
  const minIdle = options.minIdle ?? 0.85;
  const needed = options.seconds ?? 3;
  const started = Date.now();
  let streak = 0;
  let last = 1;
  let prev = sampleCpu();
  while ((Date.now() - started) / 1000 < options.maxSeconds) {
    await sleep(1000);
    const next = sampleCpu();
    last = idleShare(prev, next);
    prev = next;
    streak = last >= minIdle ? streak + 1 : 0;
    if (streak >= needed) return { quiet: true, idle: last, waitedSeconds: Math.round((Date.now() - started) / 1000) };
  }
  return { quiet: false, idle: last, waitedSeconds: Math.round((Date.now() - started) / 1000) };
}

/** Jiffies of the whole machine and of the processes the benchmark is made of (Linux /proc). */
export interface Ticks {
  readonly total: number;
  readonly idle: number;
  /** This process, its reaped children (ghz runs) and the given live processes (the servers). */
  readonly own: number;
}

function procTicks(pid: number | 'self', withChildren: boolean): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
  const [utime, stime, cutime, cstime] = [f[11] ?? 0, f[12] ?? 0, f[13] ?? 0, f[14] ?? 0];
  return utime + stime + (withChildren ? cutime + cstime : 0);
}

/** undefined where /proc is not available (not Linux) or a process is gone. */
export function readTicks(pids: readonly number[]): Ticks | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    const total = cpu.slice(0, 8).reduce((s, v) => s + v, 0);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    let own = procTicks('self', true);
    for (const pid of pids) own += procTicks(pid, false);
    return { total, idle, own };
  } catch {
    return undefined;
  }
}

/** Share of the machine's CPU time between two readings used by processes other than ours. */
export function foreignShare(a: Ticks, b: Ticks): number {
  const total = b.total - a.total;
  if (total <= 0) return 0;
  const busy = total - (b.idle - a.idle);
  return Math.max(0, Math.min(1, (busy - (b.own - a.own)) / total));
}
