// One writer per audit folder: two writers would fork the chain. The lock is a file created with
// O_EXCL holding { pid, host, token }; the holder refreshes its mtime as a heartbeat.
// A lock is stale (and taken over) when
//   - it names this host and a pid that no longer runs;
//   - it names this host and this very pid but this process does not hold it: a previous
//     incarnation in a restarted container, where the runtime is pid 1 again. This assumes one
//     audit writer per pid namespace per host, which is how Mandate runs (one per pod);
//   - it names another host (a shared volume) and its heartbeat is older than staleMs.
// Two processes that find the same stale lock at the same instant can both take it over (the read
// and the unlink are not one atomic step); the lock guards against misconfiguration (two replicas
// pointed at one folder), it is not a consensus protocol.
import { randomBytes } from 'node:crypto';
import { open, readFile, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { LOCK_FILE } from './files.ts';

export interface WriterLock {
  readonly path: string;
  release(): Promise<void>;
}

interface LockContent {
  readonly pid: number;
  readonly host: string;
  readonly token: string;
  readonly since: string;
}

/** Locks held by this process, by path: a second writer in the same process is refused too. */
const heldHere = new Set<string>();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseLock(text: string): LockContent | null {
  try {
    const v = JSON.parse(text) as Partial<LockContent>;
    if (Number.isSafeInteger(v.pid) && typeof v.host === 'string' && typeof v.token === 'string') return v as LockContent;
  } catch {
    // fall through: a lock cut short by a crash right after creation
  }
  return null;
}

function heldBy(content: LockContent | null): string {
  return content ? `pid ${content.pid} on host ${content.host}` : 'an unknown process';
}

/** Why the existing lock is still valid, or null when it is stale. */
function liveHolder(content: LockContent | null, mtimeMs: number, staleMs: number, nowMs: number): string | null {
  const fresh = nowMs - mtimeMs < staleMs;
  if (!content) return fresh ? heldBy(content) : null;
  if (content.host !== hostname()) return fresh ? heldBy(content) : null;
  if (content.pid === process.pid) return null;
  return isAlive(content.pid) ? heldBy(content) : null;
}

export async function acquireWriterLock(dir: string, options: { staleMs: number; log: Logger }): Promise<WriterLock> {
  const path = join(dir, LOCK_FILE);
  if (heldHere.has(path)) throw new MandateError('AUDIT_WRITE', `audit folder ${dir} is already open for writing in this process`);
  const content: LockContent = { pid: process.pid, host: hostname(), token: randomBytes(12).toString('hex'), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      try {
        await fh.writeFile(JSON.stringify(content) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      return holdLock(path, content.token, options);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let existing: LockContent | null;
    let mtimeMs: number;
    try {
      existing = parseLock(await readFile(path, 'utf8'));
      mtimeMs = (await stat(path)).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const holder = liveHolder(existing, mtimeMs, options.staleMs, Date.now());
    if (holder) throw new MandateError('AUDIT_WRITE', `audit folder ${dir} is locked by a live writer (${holder})`, { lock: path });
    options.log.warn('taking over a stale audit writer lock', { lock: path, holder: heldBy(existing) });
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
  throw new MandateError('AUDIT_WRITE', `could not take the audit writer lock ${path}: other processes keep taking it`);
}

function holdLock(path: string, token: string, options: { staleMs: number; log: Logger }): WriterLock {
  heldHere.add(path);
  const beat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch((err: unknown) => options.log.warn('could not refresh the audit writer lock', { lock: path, err }));
  }, Math.max(1000, Math.floor(options.staleMs / 3)));
  beat.unref();
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      clearInterval(beat);
      heldHere.delete(path);
      // Remove it only if it is still ours: after a takeover it belongs to someone else.
      const current = parseLock(await readFile(path, 'utf8').catch(() => ''));
      if (current?.token === token) await unlink(path).catch(() => undefined);
    },
  };
}
