// Temporary Mandate workspaces for tests: a copy of the example manifests plus test-specific
// ones, a data folder, and SVIDs issued by the workspace's own CA through the real CA code.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, type Config, type ConfigInput } from '../../controller/src/config.ts';
import { loadOrCreateCA } from '../../controller/src/identity/ca-store.ts';
import { issueToFolder } from '../../controller/src/identity/issue.ts';
import { agentSpiffeId } from '../../controller/src/identity/spiffe.ts';
import { silentLogger } from '../../controller/src/log.ts';
import { repoRoot } from './mandate.ts';
import type { TlsFiles } from './envoy-client.ts';

export interface Workspace {
  readonly root: string;
  readonly manifests: string;
  readonly data: string;
  config(overrides?: ConfigInput): Config;
  write(file: string, yaml: string): Promise<void>;
  svid(namespace: string, name: string, ttlSeconds?: number): Promise<TlsFiles>;
  remove(): Promise<void>;
}

export async function makeWorkspace(extra: Record<string, string> = {}, opts: { examples?: boolean } = {}): Promise<Workspace> {
  const root = await mkdtemp(join(tmpdir(), 'mandate-ws-'));
  const manifests = join(root, 'manifests');
  const data = join(root, 'data');
  if (opts.examples ?? true) await cp(join(repoRoot, 'policies'), manifests, { recursive: true, filter: (src) => !src.endsWith('.md') });
  for (const [file, yaml] of Object.entries(extra)) await writeFile(join(manifests, file), yaml);
  return {
    root,
    manifests,
    data,
    config: (overrides = {}) =>
      buildConfig({ dataDir: data, standalone: { manifests, watch: true }, authz: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0' }, audit: { stdout: true }, log: { level: 'warn' } }, overrides),
    write: (file, yaml) => writeFile(join(manifests, file), yaml),
    svid: async (namespace, name, ttlSeconds = 3600) => {
      const ca = await loadOrCreateCA({ dataDir: data, trustDomain: 'cluster.local', log: silentLogger });
      const out = join(root, 'svid', `${namespace}-${name}`);
      await issueToFolder({ ca, spiffeId: agentSpiffeId('cluster.local', namespace, name), ttlSeconds, outDir: out, now: new Date() });
      return {
        ca: await readFile(join(out, 'bundle.pem'), 'utf8'),
        cert: await readFile(join(out, 'cert.pem'), 'utf8'),
        key: await readFile(join(out, 'key.pem'), 'utf8'),
      };
    },
    remove: () => rm(root, { recursive: true, force: true }),
  };
}
