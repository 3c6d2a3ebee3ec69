// What the benchmark ran on, for the report: numbers only mean something next to the machine.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus, release, totalmem, type as osType } from 'node:os';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
  /** Tool name → version line (ghz, go). */
  readonly tools: Readonly<Record<string, string>>;
}

async function osName(): Promise<string> {
  try {
    const text = await readFile('/etc/os-release', 'utf8');
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1];
    if (pretty) return `${pretty} (${osType()} ${release()})`;
  } catch {
    // Not Linux, or no os-release: the kernel line is enough.
  }
  return `${osType()} ${release()}`;
}

export function commandVersion(cmd: string, args: readonly string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: 10_000, encoding: 'utf8' }, (err, stdout, stderr) => resolve(err ? undefined : `${stdout}${stderr}`.trim().split('\n')[0]));
  });
}

/** Short commit of the checkout, with "+dirty" when it has uncommitted changes; "unknown" outside git. */
export async function gitRevision(dir: string): Promise<string> {
  const head = await commandVersion('git', ['-C', dir, 'rev-parse', '--short', 'HEAD']);
  if (!head) return 'unknown';
  const dirty = await new Promise<boolean>((resolve) => {
    execFile('git', ['-C', dir, 'status', '--porcelain', '--untracked-files=no'], { timeout: 10_000, encoding: 'utf8' }, (err, stdout) => resolve(!err && stdout.trim() !== ''));
  });
  return dirty ? `${head}+dirty` : head;
}

export async function machineInfo(tools: Readonly<Record<string, string>> = {}): Promise<MachineInfo> {
  const list = cpus();
  const go = await commandVersion('go', ['version']);
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: await osName(),
    node: process.version,
    tools: { ...tools, ...(go ? { go } : {}) },
  };
}
