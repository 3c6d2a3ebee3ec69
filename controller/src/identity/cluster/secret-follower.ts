// Keeps one replica's view of one Secret current: a watch for prompt updates (a rotation reaches
// every replica in about a second), and a periodic full read as the safety net for a watch that
// died silently. A watch that ends or fails is restarted after a fresh read, with jittered
// exponential backoff on failures; 410 Gone is just another reason to re-read. Versions are handed
// to `onChange` one at a time, never twice, and never older than one already handed over.
import type { Logger } from '../../log.ts';
import { kubeReason } from './kube-errors.ts';
import type { SecretClient, SecretRecord, SecretWatchEvent, SecretWatchHandle } from './secret-client.ts';

export interface SecretFollowerOptions {
  readonly client: SecretClient;
  readonly namespace: string;
  readonly name: string;
  /** A full read this often, whatever the watch says. */
  readonly resyncMs: number;
  readonly log: Logger;
  /** Each new version of the Secret; undefined when it was deleted. Errors are logged, not fatal. */
  readonly onChange: (secret: SecretRecord | undefined) => Promise<void>;
  /** The version the caller already holds (not delivered again). */
  readonly initial?: SecretRecord;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
}

/**
 * Resource versions are opaque by contract, but every API server backed by etcd uses its
 * revision counter, so numeric ones can be ordered: that stops a slow read from handing back a
 * version older than one the watch already delivered. Non-numeric ones fall back to "different".
 */
export function isNewerVersion(candidate: string, current: string | undefined): boolean {
  if (current === undefined || current === '') return true;
  if (/^\d+$/.test(candidate) && /^\d+$/.test(current)) return BigInt(candidate) > BigInt(current);
  return candidate !== current;
}

export class SecretFollower {
  readonly #o: SecretFollowerOptions;
  #delivered: string | undefined;
  #deletedDelivered = false;
  #watchFrom = '';
  #watch: SecretWatchHandle | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = true;
  #chain: Promise<void> = Promise.resolve();
  #watchGeneration = 0;

  constructor(options: SecretFollowerOptions) {
    this.#o = options;
    this.#delivered = options.initial?.resourceVersion;
    this.#watchFrom = options.initial?.resourceVersion ?? '';
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#resyncTimer = setInterval(() => {
      this.resync().catch((err: unknown) => this.#o.log.warn('Secret re-read failed', { secret: this.#ref(), reason: kubeReason(err) }));
    }, this.#o.resyncMs);
    this.#resyncTimer.unref();
    this.#startWatch();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    this.#watch?.stop();
    this.#watch = undefined;
    await this.#chain;
  }

  /** Reads the Secret now and delivers it if it is new. Resolves after delivery. */
  async resync(): Promise<void> {
    const secret = await this.#o.client.get(this.#o.namespace, this.#o.name);
    if (secret) this.#watchFrom = secret.resourceVersion;
    await this.#deliver(secret);
  }

  #ref(): string {
    return `${this.#o.namespace}/${this.#o.name}`;
  }

  #deliver(secret: SecretRecord | undefined): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      if (secret) {
        if (!isNewerVersion(secret.resourceVersion, this.#delivered)) return;
        this.#delivered = secret.resourceVersion;
        this.#deletedDelivered = false;
      } else {
        if (this.#deletedDelivered) return;
        this.#deletedDelivered = true;
      }
      try {
        await this.#o.onChange(secret);
      } catch (err) {
        this.#o.log.error('handling a Secret change failed', { secret: this.#ref(), err });
      }
    });
    return this.#chain;
  }

  #backoffMs(): number {
    const base = this.#o.backoffInitialMs ?? 1000;
    const max = this.#o.backoffMaxMs ?? 30_000;
    const ms = Math.min(max, base * 2 ** Math.min(this.#failures, 16));
    return ms * (0.5 + Math.random());
  }

  #scheduleRestart(afterFailure: boolean): void {
    if (this.#stopped) return;
    this.#watch?.stop();
    this.#watch = undefined;
    this.#watchGeneration++;
    if (afterFailure) this.#failures++;
    clearTimeout(this.#retryTimer);
    const delay = afterFailure ? this.#backoffMs() : 0;
    this.#retryTimer = setTimeout(() => {
      // Re-read first: events between the old watch and the new one must not be lost.
      this.resync().then(
        () => this.#startWatch(),
        (err: unknown) => {
          this.#o.log.warn('Secret read failed; retrying', { secret: this.#ref(), reason: kubeReason(err) });
          this.#scheduleRestart(true);
        },
      );
    }, delay);
    this.#retryTimer.unref();
  }

  #onEvent(generation: number, event: SecretWatchEvent): void {
    if (generation !== this.#watchGeneration || this.#stopped) return;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.#failures = 0;
        this.#watchFrom = event.secret.resourceVersion;
        void this.#deliver(event.secret);
        return;
      case 'DELETED':
        this.#watchFrom = event.resourceVersion;
        void this.#deliver(undefined);
        return;
      case 'BOOKMARK':
        this.#failures = 0;
        if (event.resourceVersion) this.#watchFrom = event.resourceVersion;
        return;
      case 'ERROR':
        // 410 Gone: our resourceVersion was compacted away; a fresh read starts a new window.
        if (event.code !== 410) this.#o.log.warn('Secret watch error', { secret: this.#ref(), code: event.code, reason: event.message });
        this.#scheduleRestart(event.code !== 410);
        return;
    }
  }

  #startWatch(): void {
    if (this.#stopped) return;
    const generation = ++this.#watchGeneration;
    const started = Date.now();
    this.#o.client
      .watch(
        this.#o.namespace,
        this.#o.name,
        this.#watchFrom,
        (e) => this.#onEvent(generation, e),
        (err) => {
          if (generation !== this.#watchGeneration || this.#stopped) return;
          if (err !== undefined) this.#o.log.debug('Secret watch ended', { secret: this.#ref(), reason: kubeReason(err) });
          // A clean end after a while is the server's watch timeout; anything else backs off.
          this.#scheduleRestart(err !== undefined || Date.now() - started < 1000);
        },
      )
      .then(
        (handle) => {
          if (generation !== this.#watchGeneration || this.#stopped) handle.stop();
          else this.#watch = handle;
        },
        (err: unknown) => {
          if (generation !== this.#watchGeneration || this.#stopped) return;
          this.#o.log.warn('Secret watch could not start; retrying', { secret: this.#ref(), reason: kubeReason(err) });
          this.#scheduleRestart(true);
        },
      );
  }
}
