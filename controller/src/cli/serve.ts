// `mandate serve --standalone`: runs until SIGINT/SIGTERM, then shuts down in order so that every
// answered check is in the audit log and the head checkpoint is signed.
import { startCluster } from '../cluster.ts';
import { startStandalone } from '../standalone.ts';
import { parseFlags } from './args.ts';
import { configFlags, configFromFlags, loggerFor } from './common.ts';

const help = `usage: mandate serve [--standalone] [flags]

Without --standalone, Mandate runs against a Kubernetes API server (in-cluster config, or
--kubeconfig): AgentIdentity/AgentPolicy/AgentTool from informers, CA and JWT keys in Secrets,
the identity service, status and trust bundles written by the elected leader.

  --standalone            serve from a folder of manifests (no cluster)
  --config FILE           YAML config (see README); flags override it
  --data DIR              state folder: CA (standalone), audit log (default .mandate)
  --manifests DIR         manifests folder (standalone; default policies)
  --trust-domain TD       SPIFFE trust domain (default cluster.local)
  --authz-listen H:P      ext_authz gRPC over mTLS (default 127.0.0.1:9001)
  --http-listen H:P       /metrics /healthz /readyz (default 127.0.0.1:9090)
  --no-watch              standalone: do not reload when manifests change
  --kubeconfig FILE       cluster: kubeconfig to use instead of the in-cluster config
  --namespace NS          cluster: Mandate's own namespace (Secrets, Lease; env POD_NAMESPACE)
  --pod-name NAME         cluster: this replica's leader-election identity (env POD_NAME)
  --identity-listen H:P   cluster: identity service over HTTPS (default 127.0.0.1:9443)
  --jwt-issuer URL        cluster: iss of JWT-SVIDs and OIDC discovery`;

export async function serveCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('serve', args, {
    ...configFlags,
    standalone: { type: 'boolean' },
    'authz-listen': { type: 'string' },
    'http-listen': { type: 'string' },
    'no-watch': { type: 'boolean' },
    kubeconfig: { type: 'string' },
    namespace: { type: 'string' },
    'pod-name': { type: 'string' },
    'identity-listen': { type: 'string' },
    'jwt-issuer': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(help + '\n');
    return 0;
  }
  const cluster: Record<string, string> = {};
  if (values.kubeconfig) cluster.kubeconfig = values.kubeconfig;
  if (values.namespace) cluster.namespace = values.namespace;
  if (values['pod-name']) cluster.podName = values['pod-name'];
  const identityService: Record<string, string> = {};
  if (values['identity-listen']) identityService.listen = values['identity-listen'];
  if (values['jwt-issuer']) identityService.jwtIssuer = values['jwt-issuer'];
  const config = configFromFlags(values, {
    ...(values['authz-listen'] ? { authz: { listen: values['authz-listen'] } } : {}),
    ...(values['http-listen'] ? { http: { listen: values['http-listen'] } } : {}),
    ...(values['no-watch'] ? { standalone: { watch: false } } : {}),
    ...(Object.keys(cluster).length ? { cluster } : {}),
    ...(Object.keys(identityService).length ? { identityService } : {}),
  });
  const log = loggerFor(config);
  const app = values.standalone ? await startStandalone(config, log) : await startCluster(config, log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  // Kubernetes kills the pod after terminationGracePeriodSeconds anyway; better to say which
  // step hung and exit on our own than to be killed without a word.
  const deadline = setTimeout(() => {
    log.error('shutdown did not finish within 20 s; exiting', {});
    process.exit(1);
  }, 20_000);
  deadline.unref();
  await app.close();
  clearTimeout(deadline);
  log.info('stopped');
  return 0;
}
