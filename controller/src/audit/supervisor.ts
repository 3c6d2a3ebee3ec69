// Keeps the audit log usable across transient failures. An AuditLog that fails (disk full, I/O
// error) refuses every later append: the chain position is uncertain. Without a supervisor that
// would deny every agent call until someone restarts Mandate. Here the failed log is closed and a
// new one opened with backoff; AuditLog.open resumes the chain from what is on disk (repairing a
// torn tail and recording it). Appends keep failing closed until the reopen succeeds.
import { MandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { AuditRecordBody } from './record.ts';
import type { AuditLog } from './writer.ts';

export interface AuditSupervisorOptions {
  readonly open: () => Promise<AuditLog>;
  readonly log: Logger;
  /** Backoff between reopen attempts; defaults 500 ms doubling to 30 s. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Called after each successful reopen (metrics). */
  readonly onReopen?: () => void;
}

export class AuditSupervisor {
  #current: AuditLog | undefined;
  #reopening: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #opts: AuditSupervisorOptions;

  private constructor(opts: AuditSupervisorOptions, first: AuditLog) {
    this.#opts = opts;
    this.#current = first;
  }

  /** Opens the first log; a failure here is the caller's (startup fails loudly). */
  static async start(opts: AuditSupervisorOptions): Promise<AuditSupervisor> {
    return new AuditSupervisor(opts, await opts.open());
  }

  /** True while a usable log is open. */
  get healthy(): boolean {
    return this.#current !== undefined && !this.#current.stats().failed;
  }

  stats(): ReturnType<AuditLog['stats']> | undefined {
    return this.#current?.stats();
  }

  async append(body: AuditRecordBody): Promise<{ seq: number; hash: string }> {
    const log = this.#current;
    if (!log || this.#closed) throw new MandateError('AUDIT_WRITE', this.#closed ? 'audit log is closed' : 'audit log is reopening after a failure');
    try {
      return await log.append(body);
    } catch (err) {
      if (log.stats().failed) this.#recover(log);
      throw err;
    }
  }

  #recover(failed: AuditLog): void {
    if (this.#current !== failed || this.#reopening || this.#closed) return;
    this.#current = undefined;
    this.#reopening = (async () => {
      await failed.close().catch((err: unknown) => this.#opts.log.warn('closing the failed audit log', { err }));
      let delay = this.#opts.minBackoffMs ?? 500;
      while (!this.#closed) {
        try {
          this.#current = await this.#opts.open();
          this.#opts.log.info('audit log reopened after a failure', { lastSeq: this.#current.stats().lastSeq });
          this.#opts.onReopen?.();
          return;
        } catch (err) {
          this.#opts.log.error('audit log reopen failed; checks keep failing closed', { err, retryInMs: delay });
          await new Promise<void>((resolve) => {
            this.#timer = setTimeout(resolve, delay);
          });
          delay = Math.min(delay * 2, this.#opts.maxBackoffMs ?? 30_000);
        }
      }
    })().finally(() => {
      this.#reopening = undefined;
    });
  }

  /** Resolves once a reopen in progress has finished (for tests and orderly shutdown). */
  async settled(): Promise<void> {
    await this.#reopening;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#reopening;
    await this.#current?.close();
    this.#current = undefined;
  }
}
