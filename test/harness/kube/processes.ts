// Child processes of a test control plane, which must never outlive the test process, however it
// ends: a normal exit, a forgotten stop(), a signal, a test-runner timeout or SIGKILL. The last one
// cannot be handled in Node, so each control plane has a reaper: a tiny shell that blocks reading a
// pipe from the test process. When the test process is gone for any reason, the kernel closes the
// pipe, the read returns, and the reaper kills the processes listed in its pid file and removes the
// control plane's temporary folder (etcd's data included).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';

const reaperScript = `
while read -r _; do :; done
if [ -s "$1" ]; then
  pids=$(cat "$1")
  kill -TERM $pids 2>/dev/null
  n=0
  while [ $n -lt 20 ] && kill -0 $pids 2>/dev/null; do sleep 0.25; n=$((n + 1)); done
  kill -KILL $pids 2>/dev/null
fi
[ -n "$2" ] && rm -rf "$2"
`;

const logTailBytes = 6000;

/** The last lines of a log file, for error messages. */
export async function logTail(path: string, bytes = logTailBytes): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text;
  } catch {
    return '(no log)';
  }
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  /** Whether the process has exited. */
  readonly exited: boolean;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exit: Promise<string>;
  /** SIGTERM (or the given signal), then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Owns the processes of one control plane and the reaper that guards them. */
export class ProcessGroup {
  readonly dir: string;
  private readonly pidFile: string;
  private readonly children = new Map<number, ChildProcess>();
  private readonly reaper: ChildProcess;
  private readonly reaperExit: Promise<unknown>;
  private readonly onExit: () => void;

  /** `removeDirOnCrash`: whether the reaper deletes `dir` when the test process dies. */
  constructor(dir: string, removeDirOnCrash = true) {
    this.dir = dir;
    this.pidFile = join(dir, 'pids');
    this.writePids();
    this.reaper = spawn('/bin/sh', ['-c', reaperScript, 'mandate-kube-reaper', this.pidFile, removeDirOnCrash ? dir : ''], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    this.reaperExit = once(this.reaper, 'exit');
    // Neither the reaper nor its pipe may keep the test process alive: their job starts when it ends.
    this.reaper.unref();
    (this.reaper.stdin as unknown as Socket).unref();
    // Belt and braces for a normal exit: kill synchronously instead of waiting for the reaper.
    this.onExit = () => {
      for (const child of this.children.values()) child.kill('SIGKILL');
    };
    process.once('exit', this.onExit);
  }

  private writePids(): void {
    const tmp = `${this.pidFile}.tmp`;
    try {
      writeFileSync(tmp, [...this.children.keys()].join(' '));
      renameSync(tmp, this.pidFile);
    } catch (err) {
      // After close() the folder may already be gone, and with it anything left to guard.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** Starts `binary args`, stdout and stderr appended to `<dir>/<name>.log`. */
  start(name: string, binary: string, args: readonly string[]): ManagedProcess {
    const logPath = join(this.dir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(binary, [...args], { stdio: ['ignore', fd, fd], cwd: this.dir });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      // spawn reports ENOENT and friends asynchronously; the 'error' event below carries it.
      const failed = once(child, 'error').then(([err]) => `spawn failed: ${(err as Error).message}`);
      return { name, pid: -1, logPath, exited: true, exit: failed, stop: async () => {} };
    }
    this.children.set(pid, child);
    this.writePids();
    child.unref();
    let exited = false;
    const exit = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => {
        exited = true;
        this.children.delete(pid);
        this.writePids();
        resolve(signal ?? `exit code ${String(code)}`);
      });
    });
    const stop = async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 20_000): Promise<void> => {
      if (exited) return;
      child.ref(); // unref'd children do not keep the loop alive, and the caller waits for this one
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        await exit;
      } finally {
        clearTimeout(timer);
      }
    };
    return {
      name,
      pid,
      logPath,
      get exited() {
        return exited;
      },
      exit,
      stop,
    };
  }

  /** Stops the reaper; the caller has stopped the processes and removes the folder itself. */
  async close(): Promise<void> {
    process.removeListener('exit', this.onExit);
    for (const child of this.children.values()) child.kill('SIGKILL');
    this.children.clear();
    this.writePids();
    if (this.reaper.exitCode === null && this.reaper.signalCode === null) {
      this.reaper.ref();
      this.reaper.stdin?.end();
      await this.reaperExit;
    }
  }
}
