// The data plane both modes share: the audit log (supervised), the ext_authz gRPC server over
// mTLS with a server certificate from Mandate's CA (renewed at half-life and whenever the CA
// changes, in place), and the check handler. Standalone and in-cluster differ only in where the
// snapshot and the CA come from.
import { AuditSupervisor } from '../audit/supervisor.ts';
import { loadOrCreateAuditSigner } from '../audit/signer.ts';
import { AuditLog } from '../audit/writer.ts';
import type { Config } from '../config.ts';
import { issueServerCert, type CAMaterial } from '../identity/ca.ts';
import { generateKeyPair } from '../identity/keys.ts';
import { createPeerAuthenticator } from '../identity/peer.ts';
import { privateKeyToPem } from '../identity/pem.ts';
import { serverSpiffeId } from '../identity/spiffe.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { createLimiterState } from '../policy/limits.ts';
import type { PublishedSnapshot } from '../store/snapshot.ts';
import { MemoryCertificateProvider, type TlsMaterial } from './cert-provider.ts';
import type { Compiled } from './compiled.ts';
import { authPackageDefinition, authorizationService } from './protos.ts';
import { linkedPackageDefinition } from './reflection.ts';
import { startAuthzServer } from './server.ts';
import { createCheckHandler } from './service.ts';

// The listener certificate lives a day and is replaced at half-life.
const SERVER_CERT_TTL_SECONDS = 24 * 3600;

export interface AuthzPlaneOptions {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly current: () => PublishedSnapshot<Compiled> | undefined;
  /** The CA that signs the listener's certificate and whose bundle verifies the sidecars. */
  readonly ca: () => CAMaterial;
  /** Where audit JSON lines go when config.audit.stdout is on (default: process.stdout). */
  readonly stdout?: (line: string) => void;
}

export interface AuthzPlane {
  readonly port: number;
  readonly audit: AuditSupervisor;
  /** Re-issues the listener certificate now (e.g. the CA or its bundle changed). */
  renewCertificate(): Promise<void>;
  /** Stops taking checks (in-flight ones finish), then seals the audit log. */
  close(): Promise<void>;
}

export async function startAuthzPlane(o: AuthzPlaneOptions): Promise<AuthzPlane> {
  const { config, log, metrics } = o;
  const signer = await loadOrCreateAuditSigner(config.dataDir);
  const stdout = o.stdout ?? ((line: string) => process.stdout.write(line + '\n'));
  const audit = await AuditSupervisor.start({
    open: () =>
      AuditLog.open({
        dir: config.audit.dir,
        segmentRecords: config.audit.segmentRecords,
        fsync: config.audit.fsync,
        syncIntervalMs: config.audit.syncIntervalMs,
        signer,
        log: log.child({ component: 'audit' }),
        ...(config.audit.stdout ? { stdout } : {}),
      }),
    log: log.child({ component: 'audit' }),
  });

  let server: Awaited<ReturnType<typeof startAuthzServer>> | undefined;
  let rotation: NodeJS.Timeout | undefined;
  try {
    const certificates = new MemoryCertificateProvider(await listenerMaterial(o.ca(), config));
    metrics.certificatesIssued.inc({ kind: 'server' });
    const renewCertificate = async () => {
      certificates.update(await listenerMaterial(o.ca(), config));
      metrics.certificatesIssued.inc({ kind: 'server' });
      log.info('authz server certificate renewed');
    };
    rotation = setInterval(() => {
      renewCertificate().catch((err: unknown) => {
        metrics.errors.inc({ code: 'CA_UNAVAILABLE' });
        log.error('authz server certificate renewal failed; the current one stays in use', { err });
      });
    }, (SERVER_CERT_TTL_SECONDS / 2) * 1000);
    rotation.unref();

    const peers = createPeerAuthenticator({ trustDomain: config.trustDomain });
    server = await startAuthzServer({
      listen: config.authz.listen,
      maxRequestBytes: config.authz.maxRequestBytes,
      certificates,
      packageDefinition: linkedPackageDefinition(authPackageDefinition()),
      service: authorizationService(),
      authenticate: (cert) => peers.authenticate(cert),
      handler: createCheckHandler({
        current: o.current,
        limiter: createLimiterState(),
        killSwitch: config.killSwitch,
        maxBodyBytes: config.authz.maxBodyBytes,
        audit,
        metrics,
      }),
      log: log.child({ component: 'authz' }),
      metrics,
    });
    const handle = server;
    const timer = rotation;
    return {
      port: handle.port,
      audit,
      renewCertificate,
      close: async () => {
        clearInterval(timer);
        await handle.close();
        await audit.close();
      },
    };
  } catch (err) {
    clearInterval(rotation);
    await server?.close(0);
    await audit.close();
    throw err;
  }
}

async function listenerMaterial(ca: CAMaterial, config: Config): Promise<TlsMaterial> {
  const keys = await generateKeyPair();
  const isIp = (n: string) => /^[0-9.:]+$/.test(n);
  const issued = await issueServerCert(ca, {
    dnsNames: ['localhost', ...config.authz.serverNames.filter((n) => !isIp(n))],
    ipAddresses: ['127.0.0.1', '::1', ...config.authz.serverNames.filter(isIp)],
    spiffeId: serverSpiffeId(config.trustDomain, config.cluster.namespace),
    publicKey: keys.publicKey,
    ttlSeconds: SERVER_CERT_TTL_SECONDS,
    now: new Date(),
  });
  return { caPem: ca.bundlePem, certPem: issued.certPem, keyPem: await privateKeyToPem(keys.privateKey) };
}
