// The standalone store: a folder of manifests → one Snapshot plus whatever the policy engine
// compiles from it. All or nothing: a load publishes only when parsing, validation and
// compilation all report zero problems, so a typo never replaces a working rule set with a
// partial one. The published pair is immutable and swapped in one assignment; a check keeps the
// pair it took for its whole life, whatever reloads happen meanwhile.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { deepFreeze, FrozenMap } from '../freeze.ts';
import { parseFieldPath } from './field-path.ts';
import { loadManifests, type ManifestSet, type SourceFile } from './manifests.ts';
import type { ManifestProblem, Snapshot } from './snapshot.ts';
import { loadValidator } from './validate.ts';

export interface LoadResult {
  /** True when this attempt published a new snapshot. */
  readonly ok: boolean;
  /** The revision being served after the attempt (0: nothing published yet). */
  readonly revision: number;
  readonly problems: readonly ManifestProblem[];
}

export interface Published<C> {
  readonly snapshot: Snapshot;
  readonly compiled: C;
}

export interface FileStoreOptions<C> {
  dir: string;
  watch: boolean;
  log: Logger;
  /** Turns a snapshot into what checks run on; its problems block publication like manifest problems. */
  compile: (s: Snapshot) => { compiled: C; problems: readonly ManifestProblem[] };
  /** Quiet time after the last file event before reloading. Default 100 ms. */
  debounceMs?: number;
  /** Folder of the CRD YAML the manifests are validated against. Default: the repository's crds/. */
  crdDir?: string;
}

const MANIFEST_FILE = /\.(ya?ml|json)$/i;
const MAX_DEBOUNCE_FACTOR = 10;

interface Sources {
  readonly files: SourceFile[];
  readonly problems: ManifestProblem[];
}

const readProblem = (file: string, err: unknown): ManifestProblem => ({
  file,
  object: 'file',
  field: '',
  message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
});

/** Every *.yaml, *.yml and *.json below `dir`, dot-files and dot-dirs skipped, symlinks followed once. */
async function readSources(dir: string): Promise<Sources> {
  const files: SourceFile[] = [];
  const problems: ManifestProblem[] = [];
  const seenDirs = new Set<string>();
  const walk = async (current: string): Promise<void> => {
    let real: string;
    try {
      real = await realpath(current);
    } catch (err) {
      problems.push(readProblem(current, err));
      return;
    }
    if (seenDirs.has(real)) return;
    seenDirs.add(real);
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (err) {
      problems.push(readProblem(current, err));
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = join(current, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const target = await stat(full);
          isDir = target.isDirectory();
          isFile = target.isFile();
        } catch (err) {
          if (MANIFEST_FILE.test(entry.name)) problems.push(readProblem(full, err));
          continue;
        }
      }
      if (isDir) await walk(full);
      else if (isFile && MANIFEST_FILE.test(entry.name)) {
        try {
          files.push({ path: full, text: await readFile(full, 'utf8') });
        } catch (err) {
          problems.push(readProblem(full, err));
        }
      }
    }
  };
  await walk(dir);
  return { files, problems };
}

function digestOf(sources: Sources): string {
  const hash = createHash('sha256');
  for (const f of sources.files) hash.update(f.path).update('\0').update(f.text).update('\0');
  for (const p of sources.problems) hash.update(JSON.stringify(p));
  return hash.digest('hex');
}

function buildSnapshot(set: ManifestSet, revision: number, source: string): Snapshot {
  return deepFreeze({
    revision,
    loadedAt: new Date().toISOString(),
    source,
    identities: new FrozenMap(set.identities),
    policies: new FrozenMap(set.policies),
    tools: new FrozenMap(set.tools),
    secrets: new FrozenMap(set.secrets),
  });
}

// The policy compiler names objects but does not know files; point its problems at the manifest.
function locate(problem: ManifestProblem, set: ManifestSet): ManifestProblem {
  if (problem.file !== undefined) return problem;
  const origin = set.origins.get(problem.object);
  if (!origin) return problem;
  const path = parseFieldPath(problem.field) ?? [];
  return { ...problem, file: origin.file, line: origin.document.lineOf(path) };
}

export class FileStore<C> {
  readonly #dir: string;
  readonly #source: string;
  readonly #options: FileStoreOptions<C>;
  readonly #log: Logger;
  readonly #listeners = new Set<(event: LoadResult) => void>();
  #current: Published<C> | undefined;
  #revision = 0;
  #last: LoadResult = { ok: false, revision: 0, problems: [] };
  #lastDigest: string | undefined;
  #running: Promise<LoadResult> | undefined;
  #pending: Promise<LoadResult> | undefined;
  #pendingForced = false;
  #watcher: FSWatcher | undefined;
  #watching: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #firstEventAt: number | undefined;

  constructor(options: FileStoreOptions<C>) {
    this.#options = options;
    this.#dir = resolve(options.dir);
    this.#source = `files:${this.#dir}`;
    this.#log = options.log.child({ component: 'store', source: this.#source });
  }

  /** The last published pair; take it once per check and use only that. */
  current(): Published<C> | undefined {
    return this.#current;
  }

  /** Called after every load attempt, good or bad. Returns an unsubscribe function. */
  subscribe(fn: (event: LoadResult) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Reads the folder and publishes it if it is entirely valid. Never runs two loads at once. */
  load(): Promise<LoadResult> {
    return this.#enqueue(true);
  }

  /** Initial load, then (with `watch`) reloads on change. Throws MANIFEST_UNREADABLE if the folder cannot be watched. */
  async start(): Promise<LoadResult> {
    if (this.#options.watch) {
      this.#watching ??= this.#watch().catch((err: unknown) => {
        this.#watching = undefined;
        throw err;
      });
      await this.#watching;
    }
    return this.load();
  }

  async stop(): Promise<void> {
    await this.#watching?.catch(() => undefined);
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#watching = undefined;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#firstEventAt = undefined;
    await this.#pending;
    await this.#running;
  }

  async #watch(): Promise<void> {
    try {
      // Node's recursive watcher on Linux does not fail for a missing folder; check first.
      if (!(await stat(this.#dir)).isDirectory()) throw new Error('not a directory');
      // Every event counts, dot-names included: a Kubernetes ConfigMap volume swaps its `..data`
      // symlink. Reloads whose files did not change are skipped by digest, so noise is cheap.
      this.#watcher = watch(this.#dir, { recursive: true, persistent: true }, () => this.#schedule());
    } catch (err) {
      throw new MandateError('MANIFEST_UNREADABLE', `cannot watch manifest directory ${this.#dir}: ${(err as Error).message}`, { dir: this.#dir }, { cause: err });
    }
    this.#watcher.on('error', (err) => {
      this.#log.error('manifest watcher failed; changes are no longer picked up', { dir: this.#dir, err });
    });
  }

  // Debounced, but a folder that never stops changing is still reloaded every few quiet periods.
  #schedule(): void {
    const debounce = this.#options.debounceMs ?? 100;
    const now = Date.now();
    this.#firstEventAt ??= now;
    if (this.#timer !== undefined && now - this.#firstEventAt >= debounce * MAX_DEBOUNCE_FACTOR) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#firstEventAt = undefined;
      void this.#enqueue(false);
    }, debounce);
  }

  // One load at a time; requests arriving during a load share exactly one follow-up load.
  #enqueue(forced: boolean): Promise<LoadResult> {
    if (!this.#running) return this.#run(forced);
    this.#pendingForced ||= forced;
    this.#pending ??= this.#running.then(() => {
      const again = this.#pendingForced;
      this.#pending = undefined;
      this.#pendingForced = false;
      return this.#run(again);
    });
    return this.#pending;
  }

  #run(forced: boolean): Promise<LoadResult> {
    const attempt = this.#attempt(forced);
    this.#running = attempt;
    void attempt.finally(() => {
      if (this.#running === attempt) this.#running = undefined;
    });
    return attempt;
  }

  async #attempt(forced: boolean): Promise<LoadResult> {
    let result: LoadResult;
    try {
      const sources = await readSources(this.#dir);
      const digest = digestOf(sources);
      // A file event that changed nothing (editor temp files, touch) is not a new attempt.
      if (!forced && digest === this.#lastDigest) return this.#last;
      this.#lastDigest = digest;
      result = this.#process(sources, await loadValidator(this.#options.crdDir));
    } catch (err) {
      this.#lastDigest = undefined;
      const problem: ManifestProblem = { file: this.#dir, object: 'directory', field: '', message: `load failed: ${(err as Error).message}` };
      this.#log.error('manifest load failed', { dir: this.#dir, err });
      result = { ok: false, revision: this.#revision, problems: [problem] };
    }
    result = deepFreeze(result);
    this.#last = result;
    for (const fn of this.#listeners) {
      try {
        fn(result);
      } catch (err) {
        this.#log.error('store subscriber threw', { err });
      }
    }
    return result;
  }

  #process(sources: Sources, validator: Awaited<ReturnType<typeof loadValidator>>): LoadResult {
    const { set, problems: manifestProblems } = loadManifests(sources.files, validator);
    const snapshot = buildSnapshot(set, this.#revision + 1, this.#source);
    // Compile even a folder with manifest problems, so one attempt reports every problem.
    let out: { compiled: C } | undefined;
    let compileProblems: readonly ManifestProblem[];
    try {
      const compiledOut = this.#options.compile(snapshot);
      out = compiledOut;
      compileProblems = compiledOut.problems.map((p) => locate(p, set));
    } catch (err) {
      compileProblems = [{ object: 'snapshot', field: '', message: `policy compilation failed: ${(err as Error).message}` }];
    }
    const problems = [...sources.problems, ...manifestProblems, ...compileProblems];

    if (problems.length > 0 || !out) {
      for (const p of problems) {
        this.#log.warn('manifest problem', { file: p.file, line: p.line, object: p.object, field: p.field, problem: p.message });
      }
      this.#log.error(this.#current ? `manifests rejected; still serving revision ${this.#revision}` : 'manifests rejected; nothing is served yet', {
        problems: problems.length,
        revision: this.#revision,
      });
      return { ok: false, revision: this.#revision, problems };
    }

    this.#revision = snapshot.revision;
    this.#current = Object.freeze({ snapshot, compiled: out.compiled });
    this.#log.info('manifests loaded', {
      revision: snapshot.revision,
      files: sources.files.length,
      // One string: the logger redacts any field whose name looks like "secret".
      objects: `identities=${snapshot.identities.size} policies=${snapshot.policies.size} tools=${snapshot.tools.size} Secrets=${snapshot.secrets.size}`,
    });
    return { ok: true, revision: snapshot.revision, problems: [] };
  }
}
