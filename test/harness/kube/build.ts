// The real control plane binaries for integration tests: kube-apiserver and etcd, built from their
// pinned Go modules with the Go toolchain on the machine and cached outside the repository, so the
// first run takes minutes and every later one starts in seconds. Neither module can be built with a
// plain `go install module@version` (both go.mod files carry replace directives that only work
// inside their own repositories), so each build generates a small wrapper module that pins the
// published equivalents. A binary that can be neither found nor built is an error, never a skip.
//
// Overrides, as envtest users expect: KUBE_APISERVER_BIN / ETCD_BIN name one binary each;
// KUBEBUILDER_ASSETS names a folder holding both.
//
// Usage as a script (CI warms the cache with it and shows the build time):
//   node test/harness/kube/build.ts
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findGo, readLockOwner, run, tail, toolsCacheDir, tryLock } from '../gotools.ts';

/** Kubernetes release the tests run against; @kubernetes/client-node 2.x is generated from 1.34. */
export const kubeVersion = 'v1.34.4';
/** Latest etcd 3.6 patch release; Kubernetes 1.34 supports etcd 3.5.x and 3.6.x. */
export const etcdVersion = 'v3.6.16';

export type BinaryName = 'kube-apiserver' | 'etcd';
export type BinarySource = 'KUBE_APISERVER_BIN' | 'ETCD_BIN' | 'KUBEBUILDER_ASSETS' | 'cache' | 'built';

export interface ResolvedBinary {
  readonly path: string;
  /** The version the binary itself reports, with a leading `v` (e.g. `v1.34.4`). */
  readonly version: string;
  readonly source: BinarySource;
}

export interface ControlPlaneBinaries {
  readonly kubeApiserver: ResolvedBinary;
  readonly etcd: ResolvedBinary;
}

export type KubeBinaryErrorReason = 'go-missing' | 'build-failed' | 'override-broken' | 'lock-timeout';

export class KubeBinaryError extends Error {
  readonly binary: BinaryName;
  readonly reason: KubeBinaryErrorReason;

  constructor(binary: BinaryName, reason: KubeBinaryErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeBinaryError';
    this.binary = binary;
    this.reason = reason;
  }
}

export interface EnsureBinariesOptions {
  /** Defaults to process.env; tests pass their own. */
  readonly env?: NodeJS.ProcessEnv;
  /** Progress lines (build start and end, waits); defaults to stderr. */
  readonly log?: (line: string) => void;
  /** How long to wait for another process that is building the same binary. */
  readonly lockWaitMs?: number;
  /** Upper bound for one `go build` (a cold kube-apiserver build on 2 cores takes about 10 minutes). */
  readonly buildTimeoutMs?: number;
}

const defaultLockWaitMs = 60 * 60_000;
const defaultBuildTimeoutMs = 60 * 60_000;
const versionTimeoutMs = 30_000;
const lockPollMs = 1000;

interface BinarySpec {
  readonly name: BinaryName;
  readonly version: string;
  /** Cache folder name: `<cache>/<dir>/<name>`. */
  readonly dir: string;
  readonly overrideEnv: 'KUBE_APISERVER_BIN' | 'ETCD_BIN';
  /** Extracts the version from `<binary> --version` output; undefined when it is not there. */
  readonly parseVersion: (output: string) => string | undefined;
  readonly prepare: (go: string, workDir: string, env: NodeJS.ProcessEnv) => Promise<BuildPlan>;
}

interface BuildPlan {
  /** Arguments to `go -C <workDir>`. */
  readonly args: readonly string[];
}

const specs: Readonly<Record<BinaryName, BinarySpec>> = {
  'kube-apiserver': {
    name: 'kube-apiserver',
    version: kubeVersion,
    dir: `kube-${kubeVersion}`,
    overrideEnv: 'KUBE_APISERVER_BIN',
    parseVersion: (out) => /^Kubernetes (v\d+\.\d+\.\d+\S*)/m.exec(out)?.[1],
    prepare: prepareKubeApiserver,
  },
  etcd: {
    name: 'etcd',
    version: etcdVersion,
    dir: `etcd-${etcdVersion}`,
    overrideEnv: 'ETCD_BIN',
    parseVersion: (out) => {
      const v = /^etcd Version: (\d+\.\d+\.\d+\S*)/m.exec(out)?.[1];
      return v === undefined ? undefined : `v${v}`;
    },
    prepare: prepareEtcd,
  },
};

export interface UpstreamGoMod {
  /** The `go` directive (minimum language version). */
  readonly go: string;
  /** `godebug` settings, which only a main module's go.mod can carry. */
  readonly godebug: readonly string[];
  /** Replace directives that point at folders inside the upstream repository: module path → folder. */
  readonly localReplaces: ReadonlyMap<string, string>;
}

/** Reads the parts of an upstream go.mod that a wrapper module has to reproduce. */
export function parseUpstreamGoMod(text: string): UpstreamGoMod {
  let go: string | undefined;
  const godebug: string[] = [];
  const localReplaces = new Map<string, string>();
  let block: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (line === '') continue;
    if (block !== undefined) {
      if (line === ')') {
        block = undefined;
        continue;
      }
      collect(block, line);
      continue;
    }
    const open = /^(\w+)\s*\($/.exec(line);
    if (open) {
      block = open[1];
      continue;
    }
    const single = /^(\w+)\s+(.+)$/.exec(line);
    if (single) collect(single[1]!, single[2]!);
  }
  function collect(directive: string, rest: string): void {
    if (directive === 'go') go = rest;
    else if (directive === 'godebug') godebug.push(rest);
    else if (directive === 'replace') {
      const m = /^(\S+)(?:\s+\S+)?\s*=>\s*(\S+)$/.exec(rest);
      if (m && (m[2]!.startsWith('./') || m[2]!.startsWith('../'))) localReplaces.set(m[1]!, m[2]!);
    }
  }
  if (go === undefined) throw new Error('go.mod has no go directive');
  return { go, godebug, localReplaces };
}

/** `v1.34.4` → `v0.34.4`: the version every k8s.io staging module is published at for that release. */
export function stagingVersion(kube: string): string {
  const m = /^v1\.(\d+\.\d+.*)$/.exec(kube);
  if (!m) throw new Error(`not a Kubernetes 1.x version: ${kube}`);
  return `v0.${m[1]}`;
}

/**
 * The wrapper go.mod for kube-apiserver: requires k8s.io/kubernetes and maps each staging module
 * (which upstream replaces with ./staging/src/k8s.io/...) to its published release, so the build
 * uses exactly the code of that Kubernetes release. The go and godebug lines are carried over
 * because only the main module's go.mod decides the runtime's GODEBUG defaults.
 */
export function kubeWrapperGoMod(upstream: UpstreamGoMod, version: string): string {
  const staging = [...upstream.localReplaces]
    .filter(([mod, dir]) => dir.startsWith('./staging/') && mod.startsWith('k8s.io/'))
    .map(([mod]) => mod)
    .sort();
  if (staging.length === 0) throw new Error('k8s.io/kubernetes go.mod lists no staging modules');
  const published = stagingVersion(version);
  return [
    '// Generated by test/harness/kube/build.ts: builds kube-apiserver from the published modules.',
    'module mandate.local/build/kube-apiserver',
    '',
    `go ${upstream.go}`,
    ...upstream.godebug.map((g) => `\ngodebug ${g}`),
    '',
    `require k8s.io/kubernetes ${version}`,
    '',
    'replace (',
    ...staging.map((mod) => `\t${mod} => ${mod} ${published}`),
    ')',
    '',
  ].join('\n');
}

/**
 * The wrapper go.mod for etcd: the server module plus its sibling modules (which upstream replaces
 * with ../api, ../client/v3, ...) pinned at the same release.
 */
export function etcdWrapperGoMod(upstream: UpstreamGoMod, version: string): string {
  const siblings = [...upstream.localReplaces]
    .filter(([mod, dir]) => dir.startsWith('../') && mod.startsWith('go.etcd.io/etcd/'))
    .map(([mod]) => mod)
    .sort();
  if (siblings.length === 0) throw new Error('go.etcd.io/etcd/server/v3 go.mod lists no sibling modules');
  return [
    '// Generated by test/harness/kube/build.ts: builds etcd from its published server module.',
    'module mandate.local/build/etcd',
    '',
    `go ${upstream.go}`,
    '',
    'require (',
    ...['go.etcd.io/etcd/server/v3', ...siblings].map((mod) => `\t${mod} ${version}`),
    ')',
    '',
  ].join('\n');
}

// etcd's own main package (the root module of its repository) is exactly this call.
const etcdMain = `// Generated by test/harness/kube/build.ts.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
\tetcdmain.Main(os.Args)
}
`;

/** The environment of every go command: module mode, no workspace, no toolchain switch unless asked. */
function goEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    ...env,
    CGO_ENABLED: '0',
    GOWORK: 'off',
    GO111MODULE: 'on',
    // A toolchain download is never implicit; GOTOOLCHAIN=auto in the environment allows it.
    GOTOOLCHAIN: env.GOTOOLCHAIN ?? 'local',
    GOFLAGS: `${env.GOFLAGS ?? ''} -mod=mod`.trim(),
  };
}

/** `go mod download -json module@version` → the path of that module's go.mod in the module cache. */
function downloadGoMod(go: string, workDir: string, modVersion: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((done, fail) => {
    execFile(go, ['mod', 'download', '-json', modVersion], { cwd: workDir, env, timeout: 10 * 60_000, maxBuffer: 1 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      let info: { GoMod?: unknown; Error?: unknown } = {};
      try {
        info = JSON.parse(stdout) as typeof info;
      } catch {
        // no JSON: the error below carries go's own output
      }
      if (err || typeof info.GoMod !== 'string') {
        const why = typeof info.Error === 'string' ? info.Error : tail(`${stderr}\n${stdout}`) || String(err?.message);
        fail(new Error(`go mod download ${modVersion} failed: ${why}`, { cause: err }));
        return;
      }
      done(info.GoMod);
    });
  });
}

async function prepareKubeApiserver(go: string, workDir: string, env: NodeJS.ProcessEnv): Promise<BuildPlan> {
  const upstream = parseUpstreamGoMod(await readFile(await downloadGoMod(go, workDir, `k8s.io/kubernetes@${kubeVersion}`, env), 'utf8'));
  await writeFile(join(workDir, 'go.mod'), kubeWrapperGoMod(upstream, kubeVersion));
  const m = /^v(\d+)\.(\d+)\./.exec(kubeVersion)!;
  // Stamped as Kubernetes' own release builds do (hack/lib/version.sh), so /version and the
  // compatibility-version logic see a real release rather than v0.0.0-master.
  const stamp = (pkg: string): string[] => [
    `-X ${pkg}.gitVersion=${kubeVersion}`,
    `-X ${pkg}.gitMajor=${m[1]}`,
    `-X ${pkg}.gitMinor=${m[2]}`,
    `-X ${pkg}.gitTreeState=clean`,
    `-X ${pkg}.buildDate=1970-01-01T00:00:00Z`,
  ];
  const ldflags = ['-s', '-w', ...stamp('k8s.io/component-base/version'), ...stamp('k8s.io/client-go/pkg/version')].join(' ');
  return { args: ['build', '-trimpath', `-ldflags=${ldflags}`, '-o', join(workDir, 'kube-apiserver'), 'k8s.io/kubernetes/cmd/kube-apiserver'] };
}

async function prepareEtcd(go: string, workDir: string, env: NodeJS.ProcessEnv): Promise<BuildPlan> {
  const upstream = parseUpstreamGoMod(await readFile(await downloadGoMod(go, workDir, `go.etcd.io/etcd/server/v3@${etcdVersion}`, env), 'utf8'));
  await writeFile(join(workDir, 'go.mod'), etcdWrapperGoMod(upstream, etcdVersion));
  await writeFile(join(workDir, 'main.go'), etcdMain);
  return { args: ['build', '-trimpath', '-ldflags=-s -w', '-o', join(workDir, 'etcd'), '.'] };
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs `<binary> --version`; resolves the version it reports, rejects when it does not run. */
export function binaryVersion(name: BinaryName, binary: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile(binary, ['--version'], { timeout: versionTimeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const version = specs[name].parseVersion(`${stdout}\n${stderr}`);
      if (err || version === undefined) {
        fail(new Error(`${binary} --version ${err ? `failed: ${err.message}` : 'printed no version'}${stderr || stdout ? `\n${tail(`${stdout}${stderr}`)}` : ''}`, { cause: err }));
        return;
      }
      done(version);
    });
  });
}

/** Where the cached build of a binary lives: `<cache>/<kube|etcd>-<version>/<name>`. */
export function cachedBinaryPath(name: BinaryName, env: NodeJS.ProcessEnv = process.env): string {
  return join(toolsCacheDir(env), specs[name].dir, name);
}

async function cachedIfUsable(spec: BinarySpec, binary: string): Promise<string | undefined> {
  if (!(await isExecutable(binary))) return undefined;
  try {
    const version = await binaryVersion(spec.name, binary);
    return version === spec.version ? version : undefined;
  } catch {
    return undefined;
  }
}

async function build(spec: BinarySpec, cacheDir: string, finalDir: string, env: NodeJS.ProcessEnv, log: (line: string) => void, timeoutMs: number): Promise<void> {
  const go = await findGo(env);
  if (!go) {
    throw new KubeBinaryError(
      spec.name,
      'go-missing',
      `cannot build ${spec.name} ${spec.version}: the Go toolchain (go) is not on PATH. ` +
        `Install Go (https://go.dev/dl/), or point ${spec.overrideEnv} at a ${spec.name} binary or KUBEBUILDER_ASSETS at a folder with kube-apiserver and etcd.`,
    );
  }
  const workDir = await mkdtemp(join(cacheDir, `.build-${spec.dir}-`));
  const buildEnv = goEnv(env);
  try {
    const started = Date.now();
    log(`kube-build: building ${spec.name} ${spec.version} from its Go modules in ${workDir}; the first build takes several minutes, later runs use ${finalDir}`);
    let plan: BuildPlan;
    try {
      plan = await spec.prepare(go, workDir, buildEnv);
    } catch (err) {
      throw new KubeBinaryError(spec.name, 'build-failed', `preparing the ${spec.name} ${spec.version} build failed: ${(err as Error).message}`, { cause: err });
    }
    const result = await run(go, ['-C', workDir, ...plan.args], buildEnv, timeoutMs);
    if (result.spawnError || result.code !== 0) {
      const why = result.spawnError
        ? `could not run ${go}: ${result.spawnError.message}`
        : result.signal
          ? `go build was killed (${result.signal}${result.signal === 'SIGKILL' ? `, over the ${Math.round(timeoutMs / 1000)} s limit` : ''})`
          : `go build exited with ${result.code}`;
      throw new KubeBinaryError(spec.name, 'build-failed', `building ${spec.name} ${spec.version} failed: ${why}\n--- go output (tail) ---\n${tail(result.output)}`);
    }
    let version: string;
    try {
      version = await binaryVersion(spec.name, join(workDir, spec.name));
    } catch (err) {
      throw new KubeBinaryError(spec.name, 'build-failed', `built ${spec.name} ${spec.version} but it does not run: ${(err as Error).message}`, { cause: err });
    }
    if (version !== spec.version) {
      throw new KubeBinaryError(spec.name, 'build-failed', `built ${spec.name} reports ${version}, expected ${spec.version}`);
    }
    // The folder keeps the wrapper go.mod and go.sum next to the binary: a record of what was built.
    // Readers only ever see a complete folder: the rename is the commit point.
    await rm(finalDir, { recursive: true, force: true });
    await rename(workDir, finalDir);
    log(`kube-build: built ${spec.name} ${spec.version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function fromOverride(spec: BinarySpec, path: string, source: BinarySource, setting: string): Promise<ResolvedBinary> {
  const binary = resolve(path);
  if (!(await isExecutable(binary))) {
    throw new KubeBinaryError(spec.name, 'override-broken', `${setting}: ${binary} is not an executable file`);
  }
  try {
    return { path: binary, version: await binaryVersion(spec.name, binary), source };
  } catch (err) {
    throw new KubeBinaryError(spec.name, 'override-broken', `${setting}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Returns a working binary: the override (KUBE_APISERVER_BIN / ETCD_BIN, then KUBEBUILDER_ASSETS),
 * else the cached build, else a fresh build of the pinned modules. Concurrent callers in other
 * processes wait for one build instead of racing it.
 */
export async function ensureBinary(name: BinaryName, options: EnsureBinariesOptions = {}): Promise<ResolvedBinary> {
  const spec = specs[name];
  const env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  const own = env[spec.overrideEnv];
  if (own) return fromOverride(spec, own, spec.overrideEnv, `${spec.overrideEnv}=${own}`);
  const assets = env.KUBEBUILDER_ASSETS;
  if (assets) return fromOverride(spec, join(assets, name), 'KUBEBUILDER_ASSETS', `KUBEBUILDER_ASSETS=${assets} (${name})`);

  const cacheDir = toolsCacheDir(env);
  const finalDir = join(cacheDir, spec.dir);
  const binary = join(finalDir, name);
  const cached = await cachedIfUsable(spec, binary);
  if (cached) return { path: binary, version: cached, source: 'cache' };

  await mkdir(cacheDir, { recursive: true });
  const lockPath = join(cacheDir, `${spec.dir}.lock`);
  const lockWaitMs = options.lockWaitMs ?? defaultLockWaitMs;
  const deadline = Date.now() + lockWaitMs;
  let announced = false;
  while (!(await tryLock(lockPath))) {
    const ready = await cachedIfUsable(spec, binary);
    if (ready) return { path: binary, version: ready, source: 'cache' };
    if (Date.now() >= deadline) {
      const owner = await readLockOwner(lockPath);
      throw new KubeBinaryError(
        name,
        'lock-timeout',
        `gave up after ${Math.round(lockWaitMs / 1000)} s waiting for another process to build ${name} ${spec.version} ` +
          `(lock ${lockPath}${owner ? `, held by pid ${owner.pid} on ${owner.host} since ${owner.since}` : ''}); remove the lock if that process is gone`,
      );
    }
    if (!announced) {
      log(`kube-build: waiting for another process building ${name} ${spec.version} (lock ${lockPath})`);
      announced = true;
    }
    await sleep(lockPollMs);
  }
  try {
    // The previous holder may have finished between our check and taking the lock.
    const ready = await cachedIfUsable(spec, binary);
    if (ready) return { path: binary, version: ready, source: 'cache' };
    await build(spec, cacheDir, finalDir, env, log, options.buildTimeoutMs ?? defaultBuildTimeoutMs);
  } finally {
    await rm(lockPath, { force: true });
  }
  return { path: binary, version: spec.version, source: 'built' };
}

/** Both binaries; etcd first, because it builds in a fraction of kube-apiserver's time. */
export async function ensureControlPlaneBinaries(options: EnsureBinariesOptions = {}): Promise<ControlPlaneBinaries> {
  const etcd = await ensureBinary('etcd', options);
  const kubeApiserver = await ensureBinary('kube-apiserver', options);
  return { kubeApiserver, etcd };
}

async function main(): Promise<number> {
  const started = Date.now();
  for (const name of ['etcd', 'kube-apiserver'] as const) {
    const t0 = Date.now();
    const b = await ensureBinary(name);
    process.stdout.write(`${name}\t${b.version}\t${b.source}\t${b.path}\t${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  process.stdout.write(`control plane binaries ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

if (import.meta.main) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
