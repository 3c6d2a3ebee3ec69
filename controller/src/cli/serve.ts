// `mandate serve --standalone`: runs until SIGINT/SIGTERM, then shuts down in order so that every
// answered check is in the audit log and the head checkpoint is signed.
import { MandateError } from '../errors.ts';
import { startStandalone } from '../standalone.ts';
import { parseFlags } from './args.ts';
import { configFlags, configFromFlags, loggerFor } from './common.ts';

const help = `usage: mandate serve --standalone [flags]

  --standalone            serve from a folder of manifests (no cluster)
  --config FILE           YAML config (see README); flags override it
  --data DIR              state folder: CA, audit log (default .mandate)
  --manifests DIR         manifests folder (default policies)
  --trust-domain TD       SPIFFE trust domain (default cluster.local)
  --authz-listen H:P      ext_authz gRPC over mTLS (default 127.0.0.1:9001)
  --http-listen H:P       /metrics /healthz /readyz (default 127.0.0.1:9090)
  --no-watch              do not reload when manifests change`;

export async function serveCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('serve', args, {
    ...configFlags,
    standalone: { type: 'boolean' },
    'authz-listen': { type: 'string' },
    'http-listen': { type: 'string' },
    'no-watch': { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(help + '\n');
    return 0;
  }
  if (!values.standalone) {
    throw new MandateError('FLAG_INVALID', 'mandate serve: this build serves standalone only; pass --standalone (in-cluster mode comes with the Kubernetes store)');
  }
  const config = configFromFlags(values, {
    ...(values['authz-listen'] ? { authz: { listen: values['authz-listen'] } } : {}),
    ...(values['http-listen'] ? { http: { listen: values['http-listen'] } } : {}),
    ...(values['no-watch'] ? { standalone: { watch: false } } : {}),
  });
  const log = loggerFor(config);
  const app = await startStandalone(config, log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await app.close();
  log.info('stopped');
  return 0;
}
