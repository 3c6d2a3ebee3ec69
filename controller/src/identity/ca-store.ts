// The CA on disk (standalone mode): <dataDir>/ca/{ca.crt, ca.key, bundle.pem}. The first start
// creates it; every later start loads and checks it. Creation happens under an exclusive lock and
// lands with a single rename of a fully written, fsynced folder, so two processes starting at
// once end up with one CA, and a crash leaves either no CA or a whole one. An existing CA is
// never replaced: anything wrong with it is CA_UNAVAILABLE naming the file, for a human to fix.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { caFromPem, createRootCA, type CAMaterial } from './ca.ts';
import { withFileLock } from './file-lock.ts';
import { fsyncDir, writeFileAtomic, writeNewFile } from './fs-atomic.ts';
import { trustDomainProblem } from './spiffe.ts';

export interface CAPaths {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  readonly bundle: string;
  readonly lock: string;
}

export interface CAStoreOptions {
  readonly dataDir: string;
  readonly trustDomain: string;
  readonly log: Logger;
  readonly now?: Date;
  /** Lifetime of a newly created root. */
  readonly caTtlDays?: number;
  readonly lockTimeoutMs?: number;
  readonly staleLockMs?: number;
}

const TMP_PREFIX = '.ca-tmp-';

export function caPaths(dataDir: string): CAPaths {
  const dir = join(dataDir, 'ca');
  return { dir, cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key'), bundle: join(dir, 'bundle.pem'), lock: join(dataDir, 'ca.lock') };
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function unavailable(file: string, message: string, cause?: unknown): MandateError {
  return new MandateError('CA_UNAVAILABLE', `${file}: ${message}`, { file }, cause === undefined ? undefined : { cause });
}

type State = { readonly kind: 'complete' } | { readonly kind: 'absent' } | { readonly kind: 'partial'; readonly problem: MandateError };

async function inspect(paths: CAPaths): Promise<State> {
  let entries: string[];
  try {
    const st = await stat(paths.dir);
    if (!st.isDirectory()) return { kind: 'partial', problem: unavailable(paths.dir, 'exists but is not a directory') };
    entries = await readdir(paths.dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return { kind: 'absent' };
    return { kind: 'partial', problem: unavailable(paths.dir, `cannot be read (${errno(err) ?? String(err)})`, err) };
  }
  const hasCert = entries.includes('ca.crt');
  const hasKey = entries.includes('ca.key');
  if (hasCert && hasKey) return { kind: 'complete' };
  if (entries.length === 0) return { kind: 'absent' };
  if (hasCert) return { kind: 'partial', problem: unavailable(paths.key, 'is missing but ca.crt exists; restore the key or move the CA folder away') };
  if (hasKey) return { kind: 'partial', problem: unavailable(paths.cert, 'is missing but ca.key exists; restore the certificate or move the CA folder away') };
  return {
    kind: 'partial',
    problem: unavailable(paths.dir, `holds ${entries.join(', ')} but no ca.crt or ca.key; refusing to create a CA over it (move the folder away)`),
  };
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw unavailable(file, `cannot be read (${errno(err) ?? String(err)})`, err);
  }
}

/** Best effort: a failed stat here must not turn a usable CA into an unusable one. */
async function warnOnLooseModes(paths: CAPaths, log: Logger): Promise<void> {
  const keyMode = ((await stat(paths.key).catch(() => undefined))?.mode ?? 0) & 0o777;
  if ((keyMode & 0o077) !== 0) {
    log.warn('CA key file is readable by other users; chmod 600 it', { file: paths.key, mode: keyMode.toString(8) });
  }
  const dirMode = ((await stat(paths.dir).catch(() => undefined))?.mode ?? 0) & 0o777;
  if ((dirMode & 0o077) !== 0) log.warn('CA folder is accessible to other users; chmod 700 it', { dir: paths.dir, mode: dirMode.toString(8) });
}

function fingerprint(ca: CAMaterial): string {
  return createHash('sha256').update(new Uint8Array(ca.cert.rawData)).digest('hex');
}

async function load(paths: CAPaths, opts: CAStoreOptions, now: Date): Promise<CAMaterial> {
  const certPem = await readText(paths.cert);
  const keyPem = await readText(paths.key);
  let bundlePem: string | undefined;
  try {
    bundlePem = await readFile(paths.bundle, 'utf8');
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw unavailable(paths.bundle, `cannot be read (${errno(err) ?? String(err)})`, err);
  }
  const loaded = await caFromPem({
    certPem,
    keyPem,
    trustDomain: opts.trustDomain,
    now,
    labels: { cert: paths.cert, key: paths.key, bundle: paths.bundle },
    ...(bundlePem === undefined ? {} : { bundlePem }),
  });
  await warnOnLooseModes(paths, opts.log);
  for (const w of loaded.warnings) opts.log.warn(w, { dir: paths.dir });
  if (bundlePem === undefined || loaded.bundleChanged) {
    // The bundle is derived from the roots we trust, so writing it is a repair, not a new CA.
    await writeFileAtomic(paths.bundle, loaded.material.bundlePem, 0o644);
    if (bundlePem === undefined) opts.log.info('trust bundle was missing; wrote it from the CA certificate', { file: paths.bundle });
  }
  opts.log.info('CA loaded', {
    dir: paths.dir,
    trustDomain: opts.trustDomain,
    notAfter: loaded.material.notAfter.toISOString(),
    sha256: fingerprint(loaded.material),
  });
  return loaded.material;
}

/** Removes temp folders left by a creator that crashed (only called while holding the lock). */
async function sweepTemp(dataDir: string, olderThanMs: number): Promise<void> {
  for (const name of await readdir(dataDir)) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    const p = join(dataDir, name);
    const st = await stat(p).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > olderThanMs) await rm(p, { recursive: true, force: true });
  }
}

/** Creates and installs a new CA; returns undefined when another process installed one first. */
async function create(paths: CAPaths, opts: CAStoreOptions, now: Date): Promise<CAMaterial | undefined> {
  const ca = await createRootCA({ trustDomain: opts.trustDomain, now, ...(opts.caTtlDays === undefined ? {} : { ttlDays: opts.caTtlDays }) });
  const tmp = await mkdtemp(join(opts.dataDir, TMP_PREFIX));
  try {
    await writeNewFile(join(tmp, 'ca.key'), ca.keyPem, 0o600);
    await writeNewFile(join(tmp, 'ca.crt'), ca.certPem, 0o644);
    await writeNewFile(join(tmp, 'bundle.pem'), ca.bundlePem, 0o644);
    await fsyncDir(tmp);
    // rename() onto a missing or empty folder succeeds and onto a non-empty one fails: the
    // install is all-or-nothing and never overwrites a CA someone else put there.
    try {
      await rename(tmp, paths.dir);
    } catch (err) {
      if (errno(err) === 'ENOTEMPTY' || errno(err) === 'EEXIST') return undefined;
      throw err;
    }
    await fsyncDir(opts.dataDir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  opts.log.info('created a new CA', {
    dir: paths.dir,
    trustDomain: opts.trustDomain,
    notAfter: ca.notAfter.toISOString(),
    sha256: fingerprint(ca),
  });
  return ca;
}

export async function loadOrCreateCA(opts: CAStoreOptions): Promise<CAMaterial> {
  const tdProblem = trustDomainProblem(opts.trustDomain);
  if (tdProblem) throw new MandateError('CONFIG_INVALID', `trust domain: ${tdProblem}`);
  const now = opts.now ?? new Date();
  const paths = caPaths(opts.dataDir);

  // The common case (a CA exists) needs no lock: an installed CA is always complete.
  const first = await inspect(paths);
  if (first.kind === 'complete') return load(paths, opts, now);

  try {
    await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw unavailable(opts.dataDir, `cannot be created (${errno(err) ?? String(err)})`, err);
  }
  const staleMs = opts.staleLockMs ?? 60_000;
  return withFileLock(
    paths.lock,
    async () => {
      // Under the lock the state is stable: no one else is between "absent" and "installed".
      const state = await inspect(paths);
      if (state.kind === 'complete') return load(paths, opts, now);
      if (state.kind === 'partial') throw state.problem;
      await sweepTemp(opts.dataDir, staleMs);
      return (await create(paths, opts, now)) ?? load(paths, opts, now);
    },
    { staleMs, ...(opts.lockTimeoutMs === undefined ? {} : { timeoutMs: opts.lockTimeoutMs }) },
  );
}
