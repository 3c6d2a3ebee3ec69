// An exclusive lock between processes sharing a folder: a lock file created with O_EXCL. A
// holder that died leaves the file behind, so a lock is broken when its owner is gone (same
// host, pid not running) or when it is older than `staleMs` (owner on another host, or hung).
// Breaking renames the file aside first and checks it took the file it judged, so two waiters
// cannot both break the same lock and then one another's. Callers must still make their
// critical step atomic on its own (the CA is installed by one rename), because a lock judged
// stale wrongly could otherwise let two holders in.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { MandateError } from '../errors.ts';

export interface FileLockOptions {
  /** A lock older than this is considered abandoned. */
  readonly staleMs?: number;
  /** Give up waiting after this long (CA_UNAVAILABLE). */
  readonly timeoutMs?: number;
  /** Interval between attempts while another holder has the lock. */
  readonly pollMs?: number;
}

interface LockInfo {
  readonly pid: number;
  readonly host: string;
  readonly time: string;
  /** Makes every lock file's content unique, so "is this still the file I saw" is a string compare. */
  readonly nonce: string;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) === 'EPERM'; // exists, owned by someone else
  }
}

async function tryCreate(path: string): Promise<string | undefined> {
  try {
    const fh = await open(path, 'wx', 0o600);
    try {
      const info: LockInfo = { pid: process.pid, host: hostname(), time: new Date().toISOString(), nonce: randomBytes(8).toString('hex') };
      const content = JSON.stringify(info);
      await fh.writeFile(content);
      return content;
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (errno(err) === 'EEXIST') return undefined;
    throw err;
  }
}

/** Whether a lock file with this content, modified at `mtimeMs`, is abandoned. */
function isStale(content: string | undefined, mtimeMs: number, staleMs: number): boolean {
  if (Date.now() - mtimeMs > staleMs) return true;
  let info: Partial<LockInfo>;
  try {
    info = JSON.parse(content ?? '') as Partial<LockInfo>;
  } catch {
    return false; // being written right now; look again next round
  }
  return info.host === hostname() && typeof info.pid === 'number' && info.pid !== process.pid && !pidAlive(info.pid);
}

/** Moves the lock aside, if it is still the file (inode and content) that was judged stale. */
async function breakLock(path: string, ino: number, content: string | undefined): Promise<void> {
  const aside = `${path}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (errno(err) === 'ENOENT') return; // someone else broke or released it
    throw err;
  }
  const took = await stat(aside);
  const tookContent = await readFile(aside, 'utf8').catch(() => undefined);
  if (took.ino !== ino || tookContent !== content) {
    // A new holder replaced the stale file between our look and our rename: give it back.
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

/** Runs `fn` holding the lock file at `path`. */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, opts: FileLockOptions = {}): Promise<T> {
  const staleMs = opts.staleMs ?? 60_000;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const pollMs = opts.pollMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  let mine: string | undefined;
  for (;;) {
    mine = await tryCreate(path);
    if (mine !== undefined) break;
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      if (errno(err) === 'ENOENT') continue; // released between our attempts
      throw err;
    }
    const content = await readFile(path, 'utf8').catch(() => undefined);
    if (isStale(content, st.mtimeMs, staleMs)) {
      await breakLock(path, st.ino, content);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new MandateError('CA_UNAVAILABLE', `timed out after ${timeoutMs} ms waiting for lock ${path}; if no Mandate process is running, delete it`);
    }
    await delay(pollMs);
  }
  try {
    return await fn();
  } finally {
    // Remove only our own lock: if it was (wrongly) broken, the file now belongs to someone else.
    const content = await readFile(path, 'utf8').catch(() => undefined);
    if (content === mine) await unlink(path).catch(() => undefined);
  }
}
