// Standalone Mandate: manifests from a folder, state in a data folder, ext_authz (gRPC, mTLS)
// and metrics/health on the configured addresses. The composition root for this mode: it builds
// the adapters around the pure cores and owns their lifecycle. Close order matters: stop taking
// checks first, then the store, then seal the audit log (every acknowledged decision is in it).
import { hostname } from 'node:os';
import { compileSnapshot, type Compiled } from './authz/compiled.ts';
import { startAuthzPlane, type AuthzPlane } from './authz/plane.ts';
import type { Config } from './config.ts';
import { MandateError } from './errors.ts';
import { startHttpServer } from './http/server.ts';
import { loadOrCreateCA } from './identity/ca-store.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { FileStore } from './store/files.ts';
import { formatProblem } from './store/problems.ts';

export interface StandaloneHandle {
  readonly authzPort: number;
  readonly httpPort: number;
  readonly metrics: Metrics;
  readonly store: FileStore<Compiled>;
  close(): Promise<void>;
}

export async function startStandalone(config: Config, log: Logger, io: { stdout?: (line: string) => void } = {}): Promise<StandaloneHandle> {
  const metrics = createMetrics();
  const ca = await loadOrCreateCA({ dataDir: config.dataDir, trustDomain: config.trustDomain, log });

  const store = new FileStore<Compiled>({
    dir: config.standalone.manifests,
    watch: config.standalone.watch,
    log: log.child({ component: 'store' }),
    compile: (s) => compileSnapshot(s, config.trustDomain),
  });
  store.subscribe((r) => {
    metrics.snapshotReloads.inc({ result: r.ok ? 'ok' : 'rejected' });
    if (r.problems.length > 0) metrics.policyCompileErrors.inc(r.problems.length);
    metrics.snapshotRevision.set(r.revision);
  });
  const first = await store.start();
  if (!first.ok) {
    await store.stop();
    const list = first.problems.map((p) => `  ${formatProblem(p)}`).join('\n');
    throw new MandateError('MANIFEST_INVALID', `the manifests in ${config.standalone.manifests} do not load:\n${list}`, { problems: first.problems.length });
  }
  for (const w of store.current()?.compiled.warnings ?? []) log.warn('policy warning', { file: w.file, object: w.object, field: w.field, problem: w.message });

  let plane: AuthzPlane | undefined;
  try {
    plane = await startAuthzPlane({ config, log, metrics, current: () => store.current(), ca: () => ca, ...(io.stdout ? { stdout: io.stdout } : {}) });
    const authz = plane;
    const http = await startHttpServer({
      listen: config.http.listen,
      metrics,
      log,
      readiness: [
        { name: 'snapshot', ok: () => store.current() !== undefined },
        { name: 'ca', ok: () => ca.notAfter.getTime() > Date.now() },
        { name: 'audit', ok: () => authz.audit.healthy },
      ],
    });
    log.info('mandate serving (standalone)', {
      authz: `${config.authz.listen.replace(/:\d+$/, '')}:${authz.port}`,
      authzPort: authz.port,
      httpPort: http.port,
      manifests: config.standalone.manifests,
      dataDir: config.dataDir,
      trustDomain: config.trustDomain,
      revision: first.revision,
      host: hostname(),
    });
    return {
      authzPort: authz.port,
      httpPort: http.port,
      metrics,
      store,
      close: async () => {
        await authz.close();
        await store.stop();
        await http.close();
      },
    };
  } catch (err) {
    await plane?.close();
    await store.stop();
    throw err;
  }
}
