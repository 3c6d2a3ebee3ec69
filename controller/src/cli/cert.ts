// `mandate cert issue`: an X.509-SVID for standalone use (Envoy on a VM, a test client). It only
// issues for an identity that exists in the manifests and is not suspended or expired: the
// certificate's SPIFFE ID comes from that identity, and its lifetime from the identity's
// certificateTTL unless --ttl asks for less.
import { resolve } from 'node:path';
import { MandateError } from '../errors.ts';
import { loadOrCreateCA } from '../identity/ca-store.ts';
import { issueToFolder } from '../identity/issue.ts';
import { agentSpiffeId } from '../identity/spiffe.ts';
import { parseDuration } from '../duration.ts';
import { parseFlags, parseIdentityRef, required } from './args.ts';
import { configFlags, configFromFlags, loggerFor } from './common.ts';
import { loadCompiled } from './manifests.ts';

const help = `usage: mandate cert issue --identity NAMESPACE/NAME --out DIR [--ttl 1h] [--data DIR] [--manifests DIR] [--config FILE]

Writes DIR/cert.pem (the SVID), DIR/key.pem (its private key, mode 0600) and DIR/bundle.pem (the
trust bundle that verifies Mandate's server and other SVIDs). Creates the CA on first use.`;

export async function certCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'issue') {
    if (sub === undefined || sub === '--help' || sub === '-h') {
      process.stdout.write(help + '\n');
      return sub === undefined ? 2 : 0;
    }
    throw new MandateError('FLAG_INVALID', `mandate cert: unknown subcommand "${sub}" (expected issue)`);
  }
  const { values } = parseFlags('cert issue', rest, { ...configFlags, identity: { type: 'string' }, out: { type: 'string' }, ttl: { type: 'string' } });
  if (values.help) {
    process.stdout.write(help + '\n');
    return 0;
  }
  const ref = parseIdentityRef('cert issue', required('cert issue', values.identity, 'identity'));
  const outDir = resolve(required('cert issue', values.out, 'out'));
  const ttlFlag = values.ttl === undefined ? undefined : seconds(values.ttl);
  if (values.ttl !== undefined && (ttlFlag === undefined || ttlFlag <= 0)) {
    throw new MandateError('FLAG_INVALID', `mandate cert issue: --ttl must be a duration like 30m or 1h, got "${values.ttl}"`);
  }

  const config = configFromFlags(values);
  const log = loggerFor(config, { quiet: true });
  const { snapshot } = await loadCompiled(config, log);
  const identity = snapshot.identities.get(`${ref.namespace}/${ref.name}`);
  if (!identity) throw new MandateError('IDENTITY_UNKNOWN', `no AgentIdentity ${ref.namespace}/${ref.name} in ${config.standalone.manifests}`);
  const now = new Date();
  if (identity.spec.suspended) throw new MandateError('IDENTITY_SUSPENDED', `AgentIdentity ${ref.namespace}/${ref.name} is suspended: nothing is issued to it`);
  if (identity.spec.expiresAt && Date.parse(identity.spec.expiresAt) <= now.getTime()) {
    throw new MandateError('IDENTITY_SUSPENDED', `AgentIdentity ${ref.namespace}/${ref.name} expired at ${identity.spec.expiresAt}: nothing is issued to it`);
  }
  const identityTtl = seconds(identity.spec.certificateTTL ?? '') ?? config.identity.certTTLSeconds;
  if (ttlFlag !== undefined && ttlFlag > identityTtl) {
    throw new MandateError('CERT_REQUEST_INVALID', `--ttl ${values.ttl} exceeds the identity's certificateTTL (${identity.spec.certificateTTL ?? `${identityTtl}s`})`);
  }

  const ca = await loadOrCreateCA({ dataDir: config.dataDir, trustDomain: config.trustDomain, log });
  const issued = await issueToFolder({
    ca,
    spiffeId: agentSpiffeId(config.trustDomain, ref.namespace, ref.name),
    ttlSeconds: ttlFlag ?? identityTtl,
    outDir,
    now,
  });
  process.stdout.write(
    [
      `issued ${issued.spiffeId}`,
      `  serial    ${issued.serial}`,
      `  notAfter  ${issued.notAfter.toISOString()}`,
      `  cert      ${issued.certPath}`,
      `  key       ${issued.keyPath}`,
      `  bundle    ${issued.bundlePath}`,
    ].join('\n') + '\n',
  );
  return 0;
}

function seconds(text: string): number | undefined {
  const ms = parseDuration(text);
  return ms === undefined ? undefined : ms / 1000;
}
