// Drives ghz against an ext_authz server over mTLS and reduces its JSON report to the numbers the
// benchmark records. Every run is bounded twice: by request count (ghz -n) and by wall time (this
// module interrupts ghz at the deadline; ghz then stops and still prints its report, with
// endReason "cancel"). ghz's own -x flag cannot be used for the time bound: in v0.121.0 it turns
// into -z and the count is ignored.
import { spawn } from 'node:child_process';
import { AUTH_PROTO_FILE, checkMethod, envoyProtoIncludeDirs } from '../harness/bare-server.ts';

export interface GhzTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Server name to verify the certificate against (Mandate and the bare server both carry localhost). */
  readonly serverName: string;
}

export interface GhzRun {
  readonly target: string;
  readonly tls: GhzTls;
  /** JSON file with one CheckRequest or an array of them (ghz sends an array round-robin). */
  readonly dataFile: string;
  readonly requests: number;
  /** Wall-clock bound; ghz is interrupted when it is reached. */
  readonly maxSeconds: number;
  readonly concurrency: number;
  readonly connections: number;
  /** 0: as fast as possible. */
  readonly rps: number;
  /** GOMAXPROCS for ghz, so the load generator leaves CPU to the server under test. */
  readonly cpus: number;
}

export interface LoadResult {
  /** Calls answered (all statuses). */
  readonly count: number;
  /** Completed calls per second over the run. */
  readonly rps: number;
  readonly averageMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  /** Calls that did not end with gRPC OK, except those cut by the time bound. */
  readonly errors: number;
  /** Calls in flight when the time bound interrupted the run (ghz ends them Unavailable / Canceled). */
  readonly cutInFlight: number;
  readonly statusCodes: Readonly<Record<string, number>>;
  /** normal, or cancel when the time bound cut the run, or timeout. */
  readonly endReason: string;
  readonly totalSeconds: number;
}

export function ghzArgs(run: GhzRun): string[] {
  const args = [
    '--proto', AUTH_PROTO_FILE,
    '-i', envoyProtoIncludeDirs().join(','),
    '--call', checkMethod,
    '--cacert', run.tls.caFile,
    '--cert', run.tls.certFile,
    '--key', run.tls.keyFile,
    '--cname', run.tls.serverName,
    '-D', run.dataFile,
    '-n', String(run.requests),
    '-c', String(run.concurrency),
    '--connections', String(run.connections),
    '--cpus', String(run.cpus),
    '--timeout', '10s',
    '--connect-timeout', '5s',
    // The data holds no templates; rendering them per call would cost the load generator CPU.
    '--disable-template-functions',
    '--disable-template-data',
    '-O', 'json',
  ];
  if (run.rps > 0) args.push('--rps', String(run.rps));
  args.push(run.target);
  return args;
}

const nsToMs = (ns: number): number => ns / 1e6;

interface GhzJsonReport {
  count?: number;
  total?: number;
  average?: number;
  rps?: number;
  endReason?: string;
  statusCodeDistribution?: Record<string, number>;
  errorDistribution?: Record<string, number>;
  latencyDistribution?: { percentage: number; latency: number }[] | null;
}

/**
 * Reduces ghz's `-O json` output (latencies in nanoseconds) to a LoadResult. When the run was
 * interrupted, up to `concurrency` Unavailable/Canceled calls are the ones that were in flight.
 */
export function parseGhzReport(json: string, concurrency = 0): LoadResult {
  let report: GhzJsonReport;
  try {
    report = JSON.parse(json) as GhzJsonReport;
  } catch (err) {
    throw new Error(`ghz did not print a JSON report: ${json.slice(0, 300)}`, { cause: err });
  }
  if (typeof report.count !== 'number' || typeof report.rps !== 'number' || typeof report.total !== 'number') {
    throw new Error('ghz JSON report lacks count, rps or total');
  }
  const percentile = (p: number): number => {
    const entry = (report.latencyDistribution ?? []).find((d) => d.percentage === p);
    return entry ? nsToMs(entry.latency) : Number.NaN;
  };
  const statusCodes = report.statusCodeDistribution ?? {};
  const ok = statusCodes.OK ?? 0;
  const cut = report.endReason === 'cancel' ? Math.min(concurrency, (statusCodes.Unavailable ?? 0) + (statusCodes.Canceled ?? 0)) : 0;
  return {
    count: report.count,
    rps: report.rps,
    averageMs: nsToMs(report.average ?? Number.NaN),
    p50Ms: percentile(50),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    errors: report.count - ok - cut,
    cutInFlight: cut,
    statusCodes,
    endReason: report.endReason ?? 'unknown',
    totalSeconds: report.total / 1e9,
  };
}

/** Runs ghz once; rejects when it cannot run or prints no report. Interrupts it at the time bound. */
export function runGhz(binary: string, run: GhzRun): Promise<LoadResult> {
  const args = ghzArgs(run);
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      err = (err + c.toString('utf8')).slice(-4000);
    });
    // SIGINT makes ghz stop and report what it has; SIGKILL only if it ignores that.
    const soft = setTimeout(() => child.kill('SIGINT'), run.maxSeconds * 1000);
    const hard = setTimeout(() => child.kill('SIGKILL'), run.maxSeconds * 1000 + 15_000);
    child.once('error', (e) => {
      clearTimeout(soft);
      clearTimeout(hard);
      reject(new Error(`cannot run ${binary}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(soft);
      clearTimeout(hard);
      const stdout = Buffer.concat(out).toString('utf8').trim();
      if (code !== 0 && !stdout.startsWith('{')) {
        reject(new Error(`ghz exited with ${code ?? signal ?? 'unknown'} against ${run.target}: ${err.trim() || stdout.slice(0, 500)}`));
        return;
      }
      try {
        resolve(parseGhzReport(stdout, run.concurrency));
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        reject(new Error(`${message}${err ? `\nghz stderr: ${err.trim()}` : ''}`, { cause: e }));
      }
    });
  });
}
