// A real Kubernetes control plane for integration tests: etcd and kube-apiserver as child processes
// on loopback, with random ports, generated certificates, RBAC on and the ServiceAccount token issuer
// configured, so that CRD schemas, CEL rules, watches, status subresources, RBAC, TokenRequest and
// TokenReview behave exactly as in a cluster. No controller-manager, scheduler or kubelet runs: there
// is no garbage collection, no namespace deletion and no pod ever starts (see namespaces.ts).
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiextensionsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { crdResource, waitForCustomResource } from './crds.ts';
import { ensureControlPlaneBinaries, type ControlPlaneBinaries } from './build.ts';
import { loadKubeConfig, writeKubeconfig } from './kubeconfig.ts';
import { createCertificateAuthority, createServiceAccountKeys, issueCertificate, type CertificateAuthority, type KeyedCert } from './pki.ts';
import { logTail, ProcessGroup, type ManagedProcess } from './processes.ts';

export const serviceAccountIssuer = 'https://kubernetes.default.svc.cluster.local';
export const serviceClusterIpRange = '10.0.0.0/24';
/** The group that bypasses RBAC (the bootstrap cluster-admin binding). */
export const adminGroup = 'system:masters';
export const adminUser = 'mandate-test-admin';

export interface ControlPlaneOptions {
  /** Binaries to run; by default the pinned builds (see build.ts), built on first use. */
  readonly binaries?: ControlPlaneBinaries;
  /**
   * Audiences the API server accepts as its own (--api-audiences). Defaults to the issuer only, as in
   * a real cluster: a token minted for `mandate` is then not an API credential, and a TokenReview
   * must name the audience it checks (spec.audiences), which is what Mandate's attestation does.
   */
  readonly apiAudiences?: readonly string[];
  /** Extra kube-apiserver flags; a later `--flag=value` overrides an earlier one. */
  readonly extraApiserverArgs?: readonly string[];
  /** Deadline for each process to become ready. */
  readonly startTimeoutMs?: number;
  /** Keep the temporary folder (logs, certificates, etcd data) after stop(), for debugging. */
  readonly keepDir?: boolean;
  /** Progress lines; defaults to stderr. */
  readonly log?: (line: string) => void;
}

export interface KubeUser {
  /** The user name (certificate CN). */
  readonly name: string;
  /** Groups (certificate O attributes). */
  readonly groups?: readonly string[];
}

export interface ControlPlane {
  /** `https://127.0.0.1:<port>` */
  readonly server: string;
  /** The CA that signed the API server's serving certificate. */
  readonly caPem: string;
  /** The CA whose client certificates the API server accepts. */
  readonly clientCaPem: string;
  /** Kubeconfig of a client-certificate user in `system:masters`. */
  readonly adminKubeconfigPath: string;
  /** kube-apiserver's version as the binary reports it, e.g. `v1.34.4`. */
  readonly version: string;
  readonly binaries: ControlPlaneBinaries;
  /** `http://127.0.0.1:<port>` of etcd (plain, loopback only). */
  readonly etcdUrl: string;
  /** Temporary folder: certificates, kubeconfigs, logs (`etcd.log`, `kube-apiserver.log`), etcd data. */
  readonly dir: string;
  readonly logs: { readonly etcd: string; readonly kubeApiserver: string };
  /** A fresh client-node KubeConfig for the admin. */
  adminKubeConfig(): KubeConfig;
  /** Writes a kubeconfig with a client certificate for `user` (CN = name, O = groups); returns its path. */
  kubeconfigFor(user: KubeUser): Promise<string>;
  /**
   * Writes a kubeconfig that authenticates as the ServiceAccount with a TokenRequest token (the
   * API server's audience); the context's namespace is the ServiceAccount's. The ServiceAccount
   * must exist. Returns its path.
   */
  serviceAccountKubeconfig(namespace: string, name: string, options?: { expirationSeconds?: number }): Promise<string>;
  /**
   * Stops kube-apiserver (SIGTERM, or SIGKILL to simulate a crash) and starts it again on the same
   * port and etcd; resolves once it is ready and lists of every established custom resource work.
   * The watch cache starts over: a watch from a resourceVersion older than the restart gets 410 Gone.
   */
  restart(options?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Stops both processes and removes the temporary folder. Idempotent. */
  stop(): Promise<void>;
}

const defaultStartTimeoutMs = 120_000;
const pollMs = 200;
const portAttempts = 3;

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

interface TlsClient {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

function httpsGet(url: string, tls: TlsClient, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'GET', ca: tls.ca, cert: tls.cert, key: tls.key, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

class StartError extends Error {
  readonly portInUse: boolean;

  constructor(message: string, portInUse: boolean) {
    super(message);
    this.name = 'StartError';
    this.portInUse = portInUse;
  }
}

/** Polls `probe` until it returns true; fails early with the log tail when the process exits. */
async function waitReady(proc: ManagedProcess, what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    if (proc.exited) {
      const log = await logTail(proc.logPath);
      throw new StartError(`${what} exited (${await proc.exit}) before it was ready; ${proc.logPath}:\n${log}`, /address already in use/.test(log));
    }
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() >= deadline) {
      throw new StartError(`${what} was not ready within ${Math.round(timeoutMs / 1000)} s${lastError ? ` (last probe: ${lastError})` : ''}; ${proc.logPath}:\n${await logTail(proc.logPath)}`, false);
    }
    await sleep(pollMs);
  }
}

async function writePem(dir: string, name: string, pem: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, pem, { mode: 0o600 });
  return path;
}

function safeFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
}

/** Starts etcd and kube-apiserver; resolves once /readyz answers ok. One per test file or suite. */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const binaries = options.binaries ?? (await ensureControlPlaneBinaries({ log }));
  const startTimeoutMs = options.startTimeoutMs ?? defaultStartTimeoutMs;
  const started = Date.now();

  const dir = await mkdtemp(join(tmpdir(), 'mandate-kube-'));
  const group = new ProcessGroup(dir, !options.keepDir);
  let etcd: ManagedProcess | undefined;
  let apiserver: ManagedProcess | undefined;
  let stopped: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await apiserver?.stop();
      await etcd?.stop();
      await group.close();
      if (!options.keepDir) await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  try {
    const pkiDir = join(dir, 'pki');
    const kubeconfigDir = join(dir, 'kubeconfigs');
    await mkdir(pkiDir, { mode: 0o700 });
    await mkdir(kubeconfigDir, { mode: 0o700 });

    const serverCa = await createCertificateAuthority('mandate-test kube-apiserver CA');
    const clientCa = await createCertificateAuthority('mandate-test client CA');
    const serving = await issueCertificate(serverCa, {
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
      // 10.0.0.1: the `kubernetes` Service's ClusterIP in the service range.
      ipAddresses: ['127.0.0.1', '10.0.0.1'],
    });
    const admin = await issueCertificate(clientCa, { commonName: adminUser, organizations: [adminGroup], usage: 'client' });
    const saKeys = await createServiceAccountKeys();
    const files = {
      clientCa: await writePem(pkiDir, 'client-ca.crt', clientCa.certPem),
      servingCert: await writePem(pkiDir, 'apiserver.crt', serving.certPem),
      servingKey: await writePem(pkiDir, 'apiserver.key', serving.keyPem),
      saKey: await writePem(pkiDir, 'sa.key', saKeys.privateKeyPem),
      saPub: await writePem(pkiDir, 'sa.pub', saKeys.publicKeyPem),
    };
    const adminTls: TlsClient = { ca: serverCa.certPem, cert: admin.certPem, key: admin.keyPem };

    // etcd: plain HTTP on loopback, data in the temp folder. No fsync: the data dies with the test.
    let etcdUrl = '';
    for (let attempt = 1; ; attempt++) {
      const clientPort = await freeLoopbackPort();
      const peerPort = await freeLoopbackPort();
      etcdUrl = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      etcd = group.start('etcd', binaries.etcd.path, [
        '--name=mandate-test',
        `--data-dir=${join(dir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=mandate-test=${peerUrl}`,
        '--unsafe-no-fsync=true',
        '--logger=zap',
        '--log-outputs=stderr',
        '--log-level=warn',
      ]);
      const url = etcdUrl;
      try {
        await waitReady(etcd, 'etcd', async () => {
          const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
          return res.ok && ((await res.json()) as { health?: string }).health === 'true';
        }, startTimeoutMs);
        break;
      } catch (err) {
        if (!(err instanceof StartError && err.portInUse && attempt < portAttempts)) throw err;
        await rm(join(dir, 'etcd-data'), { recursive: true, force: true });
      }
    }

    const audiences = options.apiAudiences ?? [serviceAccountIssuer];
    const apiserverArgs = (port: number): string[] => [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${files.servingCert}`,
      `--tls-private-key-file=${files.servingKey}`,
      `--client-ca-file=${files.clientCa}`,
      '--authorization-mode=Node,RBAC',
      `--service-account-issuer=${serviceAccountIssuer}`,
      `--service-account-key-file=${files.saPub}`,
      `--service-account-signing-key-file=${files.saKey}`,
      `--api-audiences=${audiences.join(',')}`,
      `--service-cluster-ip-range=${serviceClusterIpRange}`,
      // Added to the default set, which already has them in 1.34; listed because the webhook
      // tests depend on them. ServiceAccount admission needs the pod's ServiceAccount to exist:
      // createNamespace() creates `default` as the ServiceAccount controller would.
      '--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook',
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
      ...(options.extraApiserverArgs ?? []),
    ];
    const apiserverPort = { value: 0 };
    const startApiserver = async (): Promise<void> => {
      apiserver = group.start('kube-apiserver', binaries.kubeApiserver.path, apiserverArgs(apiserverPort.value));
      const url = `https://127.0.0.1:${apiserverPort.value}/readyz`;
      await waitReady(apiserver, 'kube-apiserver', async () => (await httpsGet(url, adminTls, 5000)).status === 200, startTimeoutMs);
    };
    for (let attempt = 1; ; attempt++) {
      apiserverPort.value = await freeLoopbackPort();
      try {
        await startApiserver();
        break;
      } catch (err) {
        if (!(err instanceof StartError && err.portInUse && attempt < portAttempts)) throw err;
      }
    }

    const server = `https://127.0.0.1:${apiserverPort.value}`;
    const adminKubeconfigPath = await writeKubeconfig(join(kubeconfigDir, 'admin.kubeconfig'), {
      server,
      caPem: serverCa.certPem,
      user: adminUser,
      credential: { clientCertPem: admin.certPem, clientKeyPem: admin.keyPem },
    });
    log(`kube-harness: kube-apiserver ${binaries.kubeApiserver.version} ready at ${server} in ${((Date.now() - started) / 1000).toFixed(1)} s (${dir})`);

    let kubeconfigCount = 0;
    const nextKubeconfigPath = (name: string): string => join(kubeconfigDir, `${String(++kubeconfigCount).padStart(3, '0')}-${safeFileName(name)}.kubeconfig`);
    const clientKubeconfig = async (user: KubeUser, ca: CertificateAuthority): Promise<string> => {
      const cert: KeyedCert = await issueCertificate(ca, { commonName: user.name, organizations: user.groups ?? [], usage: 'client' });
      return writeKubeconfig(nextKubeconfigPath(user.name), { server, caPem: serverCa.certPem, user: user.name, credential: { clientCertPem: cert.certPem, clientKeyPem: cert.keyPem } });
    };

    return {
      server,
      caPem: serverCa.certPem,
      clientCaPem: clientCa.certPem,
      adminKubeconfigPath,
      version: binaries.kubeApiserver.version,
      binaries,
      etcdUrl,
      dir,
      logs: { etcd: join(dir, 'etcd.log'), kubeApiserver: join(dir, 'kube-apiserver.log') },
      adminKubeConfig: () => loadKubeConfig(adminKubeconfigPath),
      kubeconfigFor: (user) => clientKubeconfig(user, clientCa),
      serviceAccountKubeconfig: async (namespace, name, opts = {}) => {
        const core = loadKubeConfig(adminKubeconfigPath).makeApiClient(CoreV1Api);
        const tr = await core.createNamespacedServiceAccountToken({
          name,
          namespace,
          body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [], expirationSeconds: opts.expirationSeconds ?? 3600 } },
        });
        const token = tr.status?.token;
        if (!token) throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
        return writeKubeconfig(nextKubeconfigPath(`sa-${namespace}-${name}`), { server, caPem: serverCa.certPem, user: `system:serviceaccount:${namespace}:${name}`, credential: { token }, namespace });
      },
      restart: async ({ signal = 'SIGTERM' } = {}) => {
        if (stopped) throw new Error('the control plane is stopped');
        await apiserver?.stop(signal);
        await startApiserver();
        // /readyz does not wait for custom resources' watch caches; the first lists would get 429.
        const kc = loadKubeConfig(adminKubeconfigPath);
        const deadline = Date.now() + startTimeoutMs;
        const crds = await kc.makeApiClient(ApiextensionsV1Api).listCustomResourceDefinition();
        for (const crd of crds.items) {
          if (!crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) continue;
          await waitForCustomResource(kc, crdResource(crd), Math.max(1000, deadline - Date.now()));
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
