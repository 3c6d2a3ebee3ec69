// The audit folder's layout and the few file operations the writer needs, behind a small seam.
//   segment-000001.jsonl        records, one canonical JSON line each
//   segment-000001.seal.json    signed checkpoint of a full segment
//   head.json                   signed checkpoint of the open segment, rewritten periodically
//   audit-signing.pub.pem       the current checkpoint public key
//   audit-signing-<keyId>.pub.pem  earlier keys, kept so older seals still verify
//   writer.lock                 held by the one writer
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const HEAD_FILE = 'head.json';
export const PUBLIC_KEY_FILE = 'audit-signing.pub.pem';
export const LOCK_FILE = 'writer.lock';

const SEGMENT = /^segment-(\d{6,})\.jsonl$/;
const SEAL = /^segment-(\d{6,})\.seal\.json$/;
const PUBLIC_KEY = /^audit-signing(-[0-9a-f]{16})?\.pub\.pem$/;

export const segmentName = (n: number): string => `segment-${String(n).padStart(6, '0')}.jsonl`;
export const sealName = (n: number): string => `segment-${String(n).padStart(6, '0')}.seal.json`;
export const archivedKeyName = (keyId: string): string => `audit-signing-${keyId}.pub.pem`;

export interface AuditListing {
  /** Segment numbers present, ascending. */
  readonly segments: readonly number[];
  /** Segment numbers with a seal file, ascending. */
  readonly seals: readonly number[];
  readonly hasHead: boolean;
  /** Public key file names, the current one first. */
  readonly publicKeys: readonly string[];
  /** Leftovers of interrupted atomic writes. */
  readonly temps: readonly string[];
}

export async function listAuditDir(dir: string): Promise<AuditListing> {
  const segments: number[] = [];
  const seals: number[] = [];
  const publicKeys: string[] = [];
  const temps: string[] = [];
  let hasHead = false;
  for (const name of await readdir(dir)) {
    let m: RegExpExecArray | null;
    if ((m = SEGMENT.exec(name))) segments.push(Number(m[1]));
    else if ((m = SEAL.exec(name))) seals.push(Number(m[1]));
    else if (name === HEAD_FILE) hasHead = true;
    else if (PUBLIC_KEY.test(name)) publicKeys.push(name);
    else if (name.endsWith('.tmp')) temps.push(name);
  }
  segments.sort((a, b) => a - b);
  seals.sort((a, b) => a - b);
  publicKeys.sort((a, b) => (a === PUBLIC_KEY_FILE ? -1 : b === PUBLIC_KEY_FILE ? 1 : a < b ? -1 : 1));
  return { segments, seals, hasHead, publicKeys, temps };
}

/** The part of a file handle the writer uses. */
export interface AuditFileHandle {
  write(data: Uint8Array): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * How the writer opens files. Production uses nodeAuditFs; this is a test seam so that tests can
 * make a write or an fsync fail (a full disk, an I/O error) and see the writer fail closed.
 */
export interface AuditFs {
  open(path: string, flags: string, mode?: number): Promise<AuditFileHandle>;
}

export const nodeAuditFs: AuditFs = {
  async open(path, flags, mode) {
    const fh = await open(path, flags, mode);
    return {
      write: (data) => fh.write(data),
      datasync: () => fh.datasync(),
      sync: () => fh.sync(),
      truncate: (length) => fh.truncate(length),
      close: () => fh.close(),
    };
  },
};

/** Writes every byte, whatever the kernel's partial writes. */
export async function writeAll(fh: AuditFileHandle, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data.subarray(offset));
    if (bytesWritten <= 0) throw new Error(`short write: ${offset} of ${data.length} bytes`);
    offset += bytesWritten;
  }
}

/** Makes a just-created, renamed or removed entry of the folder durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces a file atomically and durably: temp file, fsync, rename, fsync of the folder. */
export async function writeFileAtomic(fs: AuditFs, dir: string, name: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    try {
      await writeAll(fh, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}
