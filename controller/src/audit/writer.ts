// The audit writer: one per folder, appends hash-chained records with group commit, seals full
// segments and keeps a signed head checkpoint. The check answers Envoy only after append resolves,
// so "acknowledged" means: written (and, per fsync mode, synced) to the segment file.
//
// Group commit: append() places the record in the chain at once (seq order = call order) and queues
// it; one drain loop writes everything queued since its last write in a single write(), then one
// fdatasync (batch mode), then resolves those appends. fsync 'always' writes and syncs record by
// record; 'interval' resolves after write() and fdatasyncs in the background at most
// syncIntervalMs later (like PostgreSQL's synchronous_commit=off with its WAL writer delay): a
// Mandate crash loses nothing, a machine crash at most that interval of answered records;
// 'never' resolves after write() and leaves syncing to the head checkpoints.
//
// Fail closed: after any write, sync, seal or head error the position of the chain on disk is
// uncertain, so every queued and later append rejects with AUDIT_WRITE until a new AuditLog is
// opened (which re-reads the tail and cuts a torn line). Records whose write went through but whose
// sync failed may still be on disk after a reopen: recorded, though their check was answered with
// an error; never the other way round.
//
// What the checkpoints cannot catch (verify is only as good as what is signed):
// - records appended after the last head checkpoint can be cut from the end of the open segment
//   without a trace, because nothing signed vouches for them yet. The window is at most
//   headEvery.records records or headEvery.ms milliseconds (plus the time to write a head);
// - heads are not chained to each other: someone who kept an older head.json can put it back and
//   cut the open segment back to the point it vouches for;
// - removing everything (segments, seals and head) leaves an empty folder, which is a valid empty log.
// Removing head.json alone, a sealed segment, or a seal is detected. The stdout copy in the SIEM
// is the outside anchor for the rest: compare its last seq and hash with the folder's.
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { FsyncMode } from '../config.ts';
import { MandateError, asMandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { chainRecord, type ChainedLine } from './chain.ts';
import { checkpointText, signCheckpoint } from './checkpoint.ts';
import {
  HEAD_FILE, PUBLIC_KEY_FILE, archivedKeyName, listAuditDir, nodeAuditFs, sealName, segmentName, syncDir, writeAll, writeFileAtomic,
  type AuditFileHandle, type AuditFs,
} from './files.ts';
import { acquireWriterLock, type WriterLock } from './lock.ts';
import { recoveryRecord, startRecord, stopRecord, type AuditRecordBody } from './record.ts';
import { loadResumePlan, type ResumePlan } from './resume.ts';
import { importAuditPublicKey, type CheckpointSigner } from './signer.ts';

export interface AuditLogOptions {
  readonly dir: string;
  /** Records per segment; a full segment is sealed and a new one started. */
  readonly segmentRecords: number;
  readonly fsync: FsyncMode;
  readonly signer: CheckpointSigner;
  /** Receives each record's line (without newline) after it is written to the file. */
  readonly stdout?: (line: string) => void;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Rewrite head.json after this many records or this many ms with unvouched records. Defaults 1000 / 5000. */
  readonly headEvery?: { readonly records?: number; readonly ms?: number };
  /** A lock from another host whose heartbeat is older than this is stale. Default 30 s. */
  readonly lockStaleMs?: number;
  /** fsync 'interval': the longest a written record waits for its fdatasync. Default 50 ms. */
  readonly syncIntervalMs?: number;
  /** Test seam: how segment and checkpoint files are opened (to inject I/O errors). */
  readonly fs?: AuditFs;
}

export interface AuditStats {
  /** Records written by this writer since it opened. */
  readonly records: number;
  /** Bytes written to segments since it opened. */
  readonly bytes: number;
  /** Segment files in the folder. */
  readonly segments: number;
  /** Seq of the last record written. */
  readonly lastSeq: number;
  /** Segment writes (group commits). */
  readonly batches: number;
  readonly syncs: number;
  /** Head checkpoints written. */
  readonly checkpoints: number;
  readonly failed: boolean;
}

interface Entry extends ChainedLine {
  settled: boolean;
  resolve(value: { seq: number; hash: string }): void;
  reject(err: Error): void;
}

interface HeadWaiter {
  /** The head must cover records up to this seq. */
  readonly upto: number;
  resolve(): void;
  reject(err: Error): void;
}

interface State {
  readonly dir: string;
  readonly options: AuditLogOptions;
  readonly lock: WriterLock;
  readonly fh: AuditFileHandle;
  readonly plan: ResumePlan;
  readonly segments: number;
}

const DEFAULT_HEAD_RECORDS = 1000;
const DEFAULT_HEAD_MS = 5000;

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new MandateError('CONFIG_INVALID', `audit: ${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/** Writes the current public key next to the segments, keeping a changed predecessor by keyId. */
async function publishPublicKey(fs: AuditFs, dir: string, signer: CheckpointSigner, log: Logger): Promise<void> {
  const existing = await readFile(join(dir, PUBLIC_KEY_FILE), 'utf8').catch(() => null);
  if (existing === signer.publicKeyPem) return;
  if (existing !== null) {
    let previous: string | null = null;
    try {
      previous = importAuditPublicKey(existing).keyId;
    } catch {
      log.warn('replacing an unreadable audit public key file', { dir });
    }
    if (previous !== null && previous !== signer.keyId) {
      await writeFileAtomic(fs, dir, archivedKeyName(previous), existing);
      log.warn('audit signing key changed; the previous public key is kept for older checkpoints', { previous, current: signer.keyId });
    }
  }
  await writeFileAtomic(fs, dir, PUBLIC_KEY_FILE, signer.publicKeyPem);
}

export class AuditLog {
  private readonly dir: string;
  private readonly segmentRecords: number;
  private readonly fsyncMode: FsyncMode;
  private readonly signer: CheckpointSigner;
  private readonly stdout: ((line: string) => void) | undefined;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly fs: AuditFs;
  private readonly headEveryRecords: number;
  private readonly headEveryMs: number;
  private readonly lock: WriterLock;

  private fh: AuditFileHandle | null;
  private segNo: number;
  private segFirstSeq: number;
  private segCount: number;
  private segmentFiles: number;
  /** Last seq placed in the chain (maybe still queued). */
  private tipSeq: number;
  private tipHash: string;
  /** Last seq written to the file. */
  private writtenSeq: number;
  private writtenHash: string;

  private pending: Entry[] = [];
  private inFlight: Entry[] = [];
  private headWaiters: HeadWaiter[] = [];
  private headDue = false;
  private sinceHead = 0;
  private lastHeadAt = 0;
  private headTimer: NodeJS.Timeout | null = null;
  private syncDue = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private readonly syncIntervalMs: number;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private failure: MandateError | null = null;
  private accepting = true;
  private closing: Promise<void> | null = null;
  private enqueued = 0;
  private stdoutFailures = 0;
  private readonly counters = { records: 0, bytes: 0, batches: 0, syncs: 0, checkpoints: 0 };

  private constructor(state: State) {
    const o = state.options;
    this.dir = state.dir;
    this.segmentRecords = o.segmentRecords;
    this.fsyncMode = o.fsync;
    this.syncIntervalMs = o.syncIntervalMs ?? 50;
    this.signer = o.signer;
    this.stdout = o.stdout;
    this.log = o.log;
    this.now = o.now ?? (() => new Date());
    this.fs = o.fs ?? nodeAuditFs;
    this.headEveryRecords = o.headEvery?.records ?? DEFAULT_HEAD_RECORDS;
    this.headEveryMs = o.headEvery?.ms ?? DEFAULT_HEAD_MS;
    this.lock = state.lock;
    this.fh = state.fh;
    this.segNo = state.plan.segment;
    this.segFirstSeq = state.plan.firstSeq;
    this.segCount = state.plan.count;
    this.segmentFiles = state.segments;
    this.tipSeq = this.writtenSeq = state.plan.lastSeq;
    this.tipHash = this.writtenHash = state.plan.lastHash;
    this.lastHeadAt = this.now().getTime();
  }

  /**
   * Opens (or creates) the folder for writing: takes the writer lock, publishes the public key,
   * resumes the chain after the last record (cutting a torn last line, recorded by a `recovery`
   * record), appends a `start` record and writes a head checkpoint.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    positiveInt('segmentRecords', options.segmentRecords);
    positiveInt('headEvery.records', options.headEvery?.records ?? DEFAULT_HEAD_RECORDS);
    positiveInt('headEvery.ms', options.headEvery?.ms ?? DEFAULT_HEAD_MS);
    const dir = resolve(options.dir);
    const fs = options.fs ?? nodeAuditFs;
    const now = options.now ?? (() => new Date());
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const lock = await acquireWriterLock(dir, { staleMs: options.lockStaleMs ?? 30_000, log: options.log });
    let fh: AuditFileHandle | null = null;
    let log: AuditLog | null = null;
    try {
      const listing = await listAuditDir(dir);
      for (const temp of listing.temps) await unlink(join(dir, temp)).catch(() => undefined);
      await publishPublicKey(fs, dir, options.signer, options.log);
      const plan = await loadResumePlan(dir, listing);
      const path = join(dir, segmentName(plan.segment));
      if (plan.torn) {
        const cut = await fs.open(path, 'r+');
        try {
          await cut.truncate(plan.torn.validBytes);
          await cut.sync();
        } finally {
          await cut.close();
        }
        options.log.warn('audit segment had a torn last line (crash during a write); cut it', { segment: segmentName(plan.segment), ...plan.torn });
      }
      fh = await fs.open(path, plan.create ? 'ax' : 'a', 0o644);
      if (plan.create) await syncDir(dir);
      log = new AuditLog({ dir, options, lock, fh, plan, segments: listing.segments.length + (plan.create ? 1 : 0) });
      fh = null;
      if (log.segCount >= log.segmentRecords) await log.rotate();
      if (!listing.hasHead) await log.requestHead();
      if (plan.torn) {
        const segment = segmentName(plan.segment);
        await log.enqueue(recoveryRecord(now(), { segment, ...plan.torn, lastSeq: plan.lastSeq, reason: 'torn last line after a crash during a write; never acknowledged' }));
      }
      await log.enqueue(startRecord(now(), { pid: process.pid, host: hostname() }, plan.resumedFrom));
      await log.requestHead();
      options.log.info('audit log open', { dir, segment: segmentName(log.segNo), lastSeq: log.writtenSeq, fsync: options.fsync, keyId: options.signer.keyId });
      return log;
    } catch (err) {
      if (log) await log.fh?.close().catch(() => undefined);
      else await fh?.close().catch(() => undefined);
      log?.clearTimers();
      await lock.release();
      throw err;
    }
  }

  /**
   * Appends one record. Resolves with its chain position once it is written (and synced per the
   * fsync mode). Rejects with AUDIT_WRITE when the log has failed or is closed.
   */
  append(body: AuditRecordBody): Promise<{ seq: number; hash: string }> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.accepting) return Promise.reject(new MandateError('AUDIT_WRITE', 'audit log is closed', { dir: this.dir }));
    return this.enqueue(body);
  }

  /** Writes head.json now, covering every record appended before this call. */
  checkpoint(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.accepting) return Promise.reject(new MandateError('AUDIT_WRITE', 'audit log is closed', { dir: this.dir }));
    return this.requestHead();
  }

  /** Waits for queued records, appends a `stop` record, writes the head, releases the lock. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  stats(): AuditStats {
    return { ...this.counters, segments: this.segmentFiles, lastSeq: this.writtenSeq, failed: this.failure !== null };
  }

  private async shutdown(): Promise<void> {
    this.accepting = false;
    let error: unknown = null;
    if (!this.failure) {
      try {
        await this.enqueue(stopRecord(this.now(), this.enqueued + 1));
        await this.requestHead();
      } catch (err) {
        error = err;
      }
    }
    while (this.draining) await this.drained;
    this.clearTimers();
    if (this.fh) {
      await this.fh.close().catch((err: unknown) => {
        error ??= err;
      });
      this.fh = null;
    }
    await this.lock.release();
    if (error) throw asMandateError(error, 'AUDIT_WRITE');
  }

  private enqueue(body: AuditRecordBody): Promise<{ seq: number; hash: string }> {
    let chained: ChainedLine;
    try {
      chained = chainRecord(this.tipSeq + 1, this.tipHash, body);
    } catch (err) {
      // A body that is not JSON data is the caller's bug; the chain is untouched.
      return Promise.reject(asMandateError(err));
    }
    this.tipSeq = chained.seq;
    this.tipHash = chained.hash;
    this.enqueued++;
    return new Promise((resolve, reject) => {
      this.pending.push({ ...chained, settled: false, resolve, reject });
      this.kick();
    });
  }

  private requestHead(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.headWaiters.push({ upto: this.tipSeq, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.draining) return;
    this.draining = true;
    // Start on a microtask so that appends made in the same turn join the first write.
    this.drained = Promise.resolve().then(() => this.drain());
  }

  /** The one loop that touches the files. Never rejects; errors fail the log closed. */
  private async drain(): Promise<void> {
    for (;;) {
      if (this.failure) {
        this.rejectQueued(this.failure);
        break;
      }
      try {
        // A head is written before the next batch when due, so heads keep coming under sustained load.
        if (this.headDue || this.headWaiters.some((w) => w.upto <= this.writtenSeq)) {
          await this.writeHead();
        } else if (this.syncDue) {
          // Before the next batch, so that syncs keep coming under sustained load.
          this.syncDue = false;
          await this.openHandle().datasync();
          this.counters.syncs++;
        } else if (this.pending.length > 0) {
          const batch = this.pending;
          this.pending = [];
          this.inFlight = batch;
          await this.commit(batch);
          this.inFlight = [];
          if (this.sinceHead >= this.headEveryRecords || (this.sinceHead > 0 && this.now().getTime() - this.lastHeadAt >= this.headEveryMs)) {
            this.headDue = true;
          }
        } else break;
      } catch (err) {
        this.fail(err);
      }
    }
    this.draining = false;
  }

  private async commit(batch: readonly Entry[]): Promise<void> {
    let i = 0;
    while (i < batch.length) {
      if (this.segCount >= this.segmentRecords) await this.rotate();
      const chunk = batch.slice(i, i + this.segmentRecords - this.segCount);
      if (this.fsyncMode === 'always') {
        for (const entry of chunk) await this.writeChunk([entry]);
      } else await this.writeChunk(chunk);
      i += chunk.length;
      // Seal as soon as a segment is full, so the seal exists even if no record ever follows.
      if (this.segCount >= this.segmentRecords) await this.rotate();
    }
  }

  private async writeChunk(chunk: readonly Entry[]): Promise<void> {
    const fh = this.openHandle();
    const data = Buffer.from(chunk.length === 1 ? chunk[0]!.line : chunk.map((e) => e.line).join(''), 'utf8');
    await writeAll(fh, data);
    this.counters.batches++;
    if (this.fsyncMode === 'always' || this.fsyncMode === 'batch') {
      await fh.datasync();
      this.counters.syncs++;
    } else if (this.fsyncMode === 'interval') this.armSyncTimer();
    const last = chunk[chunk.length - 1]!;
    this.writtenSeq = last.seq;
    this.writtenHash = last.hash;
    this.segCount += chunk.length;
    this.sinceHead += chunk.length;
    this.counters.records += chunk.length;
    this.counters.bytes += data.length;
    if (this.stdout) for (const entry of chunk) this.emitStdout(entry.line);
    for (const entry of chunk) {
      entry.settled = true;
      entry.resolve({ seq: entry.seq, hash: entry.hash });
    }
    this.armHeadTimer();
  }

  private emitStdout(line: string): void {
    try {
      this.stdout!(line.slice(0, -1));
    } catch (err) {
      // The file is the record of truth; a broken stdout must not stop decisions.
      if (this.stdoutFailures++ === 0) this.log.warn('audit stdout sink failed; records are still written to the segment', { err });
    }
  }

  private openHandle(): AuditFileHandle {
    if (!this.fh) throw new MandateError('AUDIT_WRITE', 'audit segment is not open');
    return this.fh;
  }

  /** Seals the full segment and starts the next one. */
  private async rotate(): Promise<void> {
    const fh = this.openHandle();
    await fh.datasync();
    this.counters.syncs++;
    const seal = await signCheckpoint({
      type: 'seal', segment: segmentName(this.segNo), firstSeq: this.segFirstSeq, lastSeq: this.writtenSeq, count: this.segCount,
      lastHash: this.writtenHash, sealedAt: this.now().toISOString(),
    }, this.signer);
    await writeFileAtomic(this.fs, this.dir, sealName(this.segNo), checkpointText(seal));
    this.fh = null;
    await fh.close();
    const next = this.segNo + 1;
    this.fh = await this.fs.open(join(this.dir, segmentName(next)), 'ax', 0o644);
    await syncDir(this.dir);
    this.segNo = next;
    this.segFirstSeq = this.writtenSeq + 1;
    this.segCount = 0;
    this.segmentFiles++;
    this.log.info('audit segment sealed', { segment: seal.segment, lastSeq: seal.lastSeq });
  }

  private async writeHead(): Promise<void> {
    const fh = this.openHandle();
    const waiters = this.headWaiters.filter((w) => w.upto <= this.writtenSeq);
    this.headWaiters = this.headWaiters.filter((w) => w.upto > this.writtenSeq);
    this.headDue = false;
    try {
      // The head must never vouch for records that are not on disk, whatever the fsync mode.
      await fh.datasync();
      this.counters.syncs++;
      const head = await signCheckpoint({
        type: 'head', segment: segmentName(this.segNo), firstSeq: this.segFirstSeq, lastSeq: this.writtenSeq, count: this.segCount,
        lastHash: this.writtenHash, writtenAt: this.now().toISOString(),
      }, this.signer);
      await writeFileAtomic(this.fs, this.dir, HEAD_FILE, checkpointText(head));
    } catch (err) {
      this.headWaiters.push(...waiters);
      throw err;
    }
    this.sinceHead = 0;
    this.lastHeadAt = this.now().getTime();
    this.counters.checkpoints++;
    this.clearHeadTimer();
    for (const w of waiters) w.resolve();
  }

  /** Records must not stay unvouched for longer than headEveryMs, even when traffic stops. */
  private armHeadTimer(): void {
    if (this.headTimer || this.sinceHead === 0) return;
    this.headTimer = setTimeout(() => {
      this.headTimer = null;
      if (this.failure || this.closing || this.sinceHead === 0) return;
      this.headDue = true;
      this.kick();
    }, this.headEveryMs);
    this.headTimer.unref();
  }

  private armSyncTimer(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = null;
      if (this.failure || this.closing) return;
      this.syncDue = true;
      this.kick();
    }, this.syncIntervalMs);
    this.syncTimer.unref();
  }

  private clearTimers(): void {
    this.clearHeadTimer();
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = null;
  }

  private clearHeadTimer(): void {
    if (this.headTimer) clearTimeout(this.headTimer);
    this.headTimer = null;
  }

  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = new MandateError('AUDIT_WRITE', 'audit log write failed; appends are refused until the log is reopened', { dir: this.dir, segment: segmentName(this.segNo) }, { cause: err });
    this.clearTimers();
    try {
      this.log.error('audit log failed closed', { dir: this.dir, segment: segmentName(this.segNo), lastSeq: this.writtenSeq, err });
    } catch {
      // The drain loop must reach rejectQueued whatever the logger does.
    }
  }

  private rejectQueued(err: MandateError): void {
    const entries = [...this.inFlight, ...this.pending].filter((e) => !e.settled);
    const waiters = this.headWaiters;
    this.inFlight = [];
    this.pending = [];
    this.headWaiters = [];
    for (const e of entries) {
      e.settled = true;
      e.reject(err);
    }
    for (const w of waiters) w.reject(err);
  }
}
