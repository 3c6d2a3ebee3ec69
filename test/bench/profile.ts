// Where Mandate's CPU time goes under load: `npm run bench -- --profile` starts Mandate with
// node --cpu-prof and this module reduces the .cpuprofile to the functions with the most self time
// (and the files, which say which part of the pipeline they belong to). Profiling slows the
// server, so a profiled run informs optimisation work and is never recorded as the benchmark.
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly hitCount?: number;
}

interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface HotSpot {
  readonly name: string;
  readonly selfMs: number;
  /** Share of the busy (non-idle) sampled time. */
  readonly share: number;
}

function location(url: string, root: string): string {
  if (url === '') return '(native)';
  let path = url;
  if (url.startsWith('file://')) {
    try {
      path = fileURLToPath(url);
    } catch {
      return url;
    }
  }
  const rel = relative(root, path);
  return rel.startsWith('..') ? path : rel;
}

/** Self time per function and per file, largest first. */
export function summarizeCpuProfile(profile: CpuProfile, root: string, top = 20): { functions: HotSpot[]; files: HotSpot[]; busyMs: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i += 1) {
    // Each sample's time is the delta to the next sample.
    const dt = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, dt));
  }
  const fnTime = new Map<string, number>();
  const fileTime = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    // Idle is the event loop waiting (the profile spans the whole process, warm-up and bare runs
    // included); shares are of the time Mandate was doing something.
    if (!node || node.callFrame.functionName === '(idle)') continue;
    busyUs += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = location(url, root);
    const fn = `${functionName || '(anonymous)'} ${file}${url ? `:${lineNumber + 1}` : ''}`;
    fnTime.set(fn, (fnTime.get(fn) ?? 0) + us);
    fileTime.set(file, (fileTime.get(file) ?? 0) + us);
  }
  const rank = (m: Map<string, number>): HotSpot[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: us / 1000, share: us / Math.max(1, busyUs) }));
  return { functions: rank(fnTime), files: rank(fileTime), busyMs: busyUs / 1000 };
}

export function hotSpotTable(title: string, rows: readonly HotSpot[]): string {
  return [`${title}`, ...rows.map((r) => `  ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.selfMs.toFixed(0).padStart(7)} ms  ${r.name}`)].join('\n');
}

/** Reads the one .cpuprofile node wrote into `dir`. */
export async function readCpuProfile(dir: string): Promise<CpuProfile> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}: did Mandate exit cleanly?`);
  return JSON.parse(await readFile(join(dir, files.sort().at(-1)!), 'utf8')) as CpuProfile;
}
