// Mandate as the benchmark runs it: a child process `mandate serve --standalone` on a generated
// config (authz and HTTP on 127.0.0.1, audit with the product's default fsync mode unless told
// otherwise, no stdout copy), readiness
// by polling /readyz, and client certificates from `mandate cert issue`.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { FsyncMode } from '../../controller/src/config.ts';
import { stringify } from 'yaml';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const mainTs = join(repoRoot, 'controller', 'src', 'main.ts');

/** A free TCP port on 127.0.0.1 (closed again before returning; the caller binds it soon after). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (!address || typeof address === 'string') throw new Error('could not get a free port');
  return address.port;
}

export interface MandateConfigInput {
  readonly dataDir: string;
  readonly manifests: string;
  readonly authzPort: number;
  readonly httpPort: number;
  readonly trustDomain: string;
  /** Audit fsync mode; the product default (interval) when absent. */
  readonly fsync?: FsyncMode;
}

/** The YAML config (see controller/src/config.ts) the benchmark serves with. */
export function mandateConfigYaml(input: MandateConfigInput): string {
  return stringify({
    trustDomain: input.trustDomain,
    dataDir: input.dataDir,
    standalone: { manifests: input.manifests, watch: false },
    authz: { listen: `127.0.0.1:${input.authzPort}` },
    http: { listen: `127.0.0.1:${input.httpPort}` },
    audit: { dir: join(input.dataDir, 'audit'), ...(input.fsync ? { fsync: input.fsync } : {}), stdout: false },
    log: { level: 'info' },
  });
}

function node(args: readonly string[], options: { cwd: string; timeoutMs: number }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs, killSignal: 'SIGKILL' });
    let output = '';
    const keep = (c: Buffer): void => {
      output = (output + c.toString('utf8')).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

export interface IssuedCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly bundleFile: string;
}

/**
 * `mandate cert issue --identity NS/NAME --out DIR --config FILE --data DIR`, which writes cert.pem,
 * key.pem and bundle.pem. The config names the manifests folder: the command issues only for an
 * identity that exists there.
 */
export async function issueCertificate(identity: string, outDir: string, opts: { readonly configFile: string; readonly dataDir: string }): Promise<IssuedCert> {
  const args = [mainTs, 'cert', 'issue', '--identity', identity, '--out', outDir, '--config', opts.configFile, '--data', opts.dataDir];
  const result = await node(args, { cwd: repoRoot, timeoutMs: 60_000 });
  if (result.code !== 0) {
    throw new Error(`mandate cert issue --identity ${identity} failed (exit ${result.code ?? 'killed'}):\n${result.output.trim()}`);
  }
  const files = { certFile: join(outDir, 'cert.pem'), keyFile: join(outDir, 'key.pem'), bundleFile: join(outDir, 'bundle.pem') };
  const present = new Set(await readdir(outDir));
  const missing = Object.values(files).filter((f) => !present.has(f.slice(outDir.length + 1)));
  if (missing.length > 0) {
    throw new Error(`mandate cert issue wrote ${[...present].join(', ') || 'nothing'} into ${outDir}; expected cert.pem, key.pem and bundle.pem`);
  }
  return files;
}

export interface MandateProcess {
  readonly configFile: string;
  readonly authzPort: number;
  readonly httpPort: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

async function tail(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).slice(-3000).trim();
  } catch {
    return '';
  }
}

/** Starts `mandate serve --standalone --config FILE` and resolves once /readyz answers 200. */
export async function startMandate(options: {
  readonly workDir: string;
  readonly dataDir: string;
  readonly manifests: string;
  readonly trustDomain: string;
  readonly readyTimeoutMs?: number;
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[];
}): Promise<MandateProcess> {
  const authzPort = await freePort();
  const httpPort = await freePort();
  const configFile = join(options.workDir, 'mandate.yaml');
  await writeFile(configFile, mandateConfigYaml({ dataDir: options.dataDir, manifests: options.manifests, authzPort, httpPort, trustDomain: options.trustDomain }));
  const logFile = join(options.workDir, 'mandate.log');
  const log = createWriteStream(logFile);
  await once(log, 'open');
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), mainTs, 'serve', '--standalone', '--config', configFile], { cwd: repoRoot, stdio: ['ignore', log, log] });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    }),
  );

  const stop = async (graceMs = 10_000): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    }
    log.end();
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  const url = `http://127.0.0.1:${httpPort}/readyz`;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exited) {
      log.end();
      throw new Error(`mandate serve exited (${exited.code ?? exited.signal}) before it was ready; log ${logFile}:\n${await tail(logFile)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return { configFile, authzPort, httpPort, logFile, child, stop };
      last = `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(200);
  }
  await stop();
  throw new Error(`mandate serve was not ready within ${Math.round((options.readyTimeoutMs ?? 60_000) / 1000)} s (${url}: ${last}); log ${logFile}:\n${await tail(logFile)}`);
}
