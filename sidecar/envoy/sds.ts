// File-based SDS. The SDS resource files are static: they name PEM files that the in-pod agent
// rotates by swapping its folder atomically (write a new folder, move a symlink). Envoy reloads a
// secret when its `watched_directory` sees that move, and reads certificate and key together, so a
// rotation never serves a half-written pair and needs no restart.
import { resolveInput } from './input.ts';
import type { BootstrapInput, BootstrapPaths } from './input.ts';

export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/** Secret names used by the bootstrap; the SDS file of secret `n` is `<sdsDir>/<n>.json`. */
export const SVID_SECRET = 'mandate-svid';
export const BUNDLE_SECRET = 'mandate-trust-bundle';

/** PEM files of the pod's SVID inside paths.svidDir (written by the agent). */
export const SVID_FILES = Object.freeze({ certificate: 'svid.pem', privateKey: 'svid-key.pem', bundle: 'bundle.pem' });

/** A file-system-safe label for a host name ("*.example.com" → "wildcard.example.com"). */
export function hostLabel(host: string): string {
  return host.startsWith('*.') ? `wildcard.${host.slice(2)}` : host;
}

/** Name of the SDS secret holding the interception certificate for `host`. */
export function interceptSecretName(host: string): string {
  return `intercept-${hostLabel(host)}`;
}

/** The PEM files of the interception certificate for `host`, relative to paths.interceptDir. */
export function interceptCertFiles(host: string): { readonly certificate: string; readonly privateKey: string } {
  const label = hostLabel(host);
  return { certificate: `${label}.pem`, privateKey: `${label}-key.pem` };
}

export function sdsFileName(secret: string): string {
  return `${secret}.json`;
}

/** The SdsSecretConfig that points Envoy at the SDS file of `secret`. */
export function sdsSecretConfig(paths: BootstrapPaths, secret: string): Record<string, unknown> {
  return {
    name: secret,
    sds_config: {
      path_config_source: { path: `${paths.sdsDir}/${sdsFileName(secret)}` },
      resource_api_version: 'V3',
    },
  };
}

function discoveryResponse(secret: Record<string, unknown>): string {
  return `${JSON.stringify({ resources: [{ '@type': SECRET_TYPE_URL, ...secret }] }, null, 2)}\n`;
}

/**
 * The SDS resource files for `input`: file name (inside paths.sdsDir) → JSON content, in a stable
 * order. One file per secret: the SVID (certificate and key), the trust bundle that verifies
 * Mandate's authz server, and one interception certificate per intercepted host.
 */
export function buildSdsFiles(input: BootstrapInput): Record<string, string> {
  const { paths, routes } = resolveInput(input);
  const files: Record<string, string> = {};
  files[sdsFileName(SVID_SECRET)] = discoveryResponse({
    name: SVID_SECRET,
    tls_certificate: {
      certificate_chain: { filename: `${paths.svidDir}/${SVID_FILES.certificate}` },
      private_key: { filename: `${paths.svidDir}/${SVID_FILES.privateKey}` },
      watched_directory: { path: paths.svidDir },
    },
  });
  files[sdsFileName(BUNDLE_SECRET)] = discoveryResponse({
    name: BUNDLE_SECRET,
    validation_context: {
      trusted_ca: { filename: `${paths.svidDir}/${SVID_FILES.bundle}` },
      watched_directory: { path: paths.svidDir },
    },
  });
  const hosts = [...new Set(routes.filter((r) => r.intercept).map((r) => r.host))].sort();
  for (const host of hosts) {
    const pem = interceptCertFiles(host);
    const name = interceptSecretName(host);
    files[sdsFileName(name)] = discoveryResponse({
      name,
      tls_certificate: {
        certificate_chain: { filename: `${paths.interceptDir}/${pem.certificate}` },
        private_key: { filename: `${paths.interceptDir}/${pem.privateKey}` },
        watched_directory: { path: paths.interceptDir },
      },
    });
  }
  return files;
}
