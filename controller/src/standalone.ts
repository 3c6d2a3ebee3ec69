// Standalone Mandate: manifests from a folder, state in a data folder, ext_authz (gRPC, mTLS)
// and metrics/health on the configured addresses. The composition root: it builds the adapters
// around the pure cores and owns their lifecycle. Close order matters: stop taking checks first,
// then the store, then seal the audit log (so every acknowledged decision is in a sealed head).
import { hostname } from 'node:os';
import { AuditSupervisor } from './audit/supervisor.ts';
import { AuditLog } from './audit/writer.ts';
import { loadOrCreateAuditSigner } from './audit/signer.ts';
import { compileSnapshot, type Compiled } from './authz/compiled.ts';
import { MemoryCertificateProvider } from './authz/cert-provider.ts';
import { authPackageDefinition, authorizationService } from './authz/protos.ts';
import { linkedPackageDefinition } from './authz/reflection.ts';
import { startAuthzServer, type AuthzServerHandle } from './authz/server.ts';
import { createCheckHandler } from './authz/service.ts';
import type { Config } from './config.ts';
import { MandateError } from './errors.ts';
import { startHttpServer, type HttpServerHandle } from './http/server.ts';
import { issueServerCert, type CAMaterial } from './identity/ca.ts';
import { loadOrCreateCA } from './identity/ca-store.ts';
import { generateKeyPair } from './identity/keys.ts';
import { createPeerAuthenticator } from './identity/peer.ts';
import { privateKeyToPem } from './identity/pem.ts';
import { serverSpiffeId } from './identity/spiffe.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { createLimiterState } from './policy/limits.ts';
import { formatProblem } from './store/problems.ts';
import { FileStore } from './store/files.ts';

export interface StandaloneHandle {
  readonly authzPort: number;
  readonly httpPort: number;
  readonly metrics: Metrics;
  readonly store: FileStore<Compiled>;
  close(): Promise<void>;
}

// The listener certificate lives a day and is replaced at half-life, in place (no restart).
const SERVER_CERT_TTL_SECONDS = 24 * 3600;

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

  const signer = await loadOrCreateAuditSigner(config.dataDir);
  const audit = await AuditSupervisor.start({
    open: () =>
      AuditLog.open({
        dir: config.audit.dir,
        segmentRecords: config.audit.segmentRecords,
        fsync: config.audit.fsync,
        signer,
        log: log.child({ component: 'audit' }),
        ...(config.audit.stdout ? { stdout: io.stdout ?? ((line: string) => process.stdout.write(line + '\n')) } : {}),
      }),
    log: log.child({ component: 'audit' }),
  });

  const certificates = new MemoryCertificateProvider(await serverMaterial(ca, config));
  metrics.certificatesIssued.inc({ kind: 'server' });
  const rotation = setInterval(() => {
    serverMaterial(ca, config).then(
      (m) => {
        certificates.update(m);
        metrics.certificatesIssued.inc({ kind: 'server' });
        log.info('authz server certificate rotated');
      },
      (err: unknown) => {
        metrics.errors.inc({ code: 'CA_UNAVAILABLE' });
        log.error('authz server certificate rotation failed; the current one stays in use', { err });
      },
    );
  }, (SERVER_CERT_TTL_SECONDS / 2) * 1000);
  rotation.unref();

  const peers = createPeerAuthenticator({ trustDomain: config.trustDomain });
  let authz: AuthzServerHandle | undefined;
  let http: HttpServerHandle | undefined;
  try {
    authz = await startAuthzServer({
      listen: config.authz.listen,
      maxRequestBytes: config.authz.maxRequestBytes,
      certificates,
      packageDefinition: linkedPackageDefinition(authPackageDefinition()),
      service: authorizationService(),
      authenticate: (cert) => peers.authenticate(cert),
      handler: createCheckHandler({
        current: () => store.current(),
        limiter: createLimiterState(),
        killSwitch: config.killSwitch,
        maxBodyBytes: config.authz.maxBodyBytes,
        audit,
        metrics,
      }),
      log: log.child({ component: 'authz' }),
      metrics,
    });
    http = await startHttpServer({
      listen: config.http.listen,
      metrics,
      log,
      readiness: [
        { name: 'snapshot', ok: () => store.current() !== undefined },
        { name: 'ca', ok: () => ca.notAfter.getTime() > Date.now() },
        { name: 'audit', ok: () => audit.healthy },
      ],
    });
  } catch (err) {
    clearInterval(rotation);
    await authz?.close(0);
    await store.stop();
    await audit.close();
    throw err;
  }
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

  const authzHandle = authz;
  const httpHandle = http;
  return {
    authzPort: authz.port,
    httpPort: http.port,
    metrics,
    store,
    close: async () => {
      clearInterval(rotation);
      await authzHandle.close();
      await store.stop();
      await audit.close();
      await httpHandle.close();
    },
  };
}

async function serverMaterial(ca: CAMaterial, config: Config) {
  const keys = await generateKeyPair();
  const issued = await issueServerCert(ca, {
    dnsNames: ['localhost', ...config.authz.serverNames.filter((n) => !/^[0-9.:]+$/.test(n))],
    ipAddresses: ['127.0.0.1', '::1', ...config.authz.serverNames.filter((n) => /^[0-9.:]+$/.test(n))],
    spiffeId: serverSpiffeId(config.trustDomain),
    publicKey: keys.publicKey,
    ttlSeconds: SERVER_CERT_TTL_SECONDS,
    now: new Date(),
  });
  return { caPem: ca.bundlePem, certPem: issued.certPem, keyPem: await privateKeyToPem(keys.privateKey) };
}
