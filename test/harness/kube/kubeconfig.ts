// Kubeconfig files for the test control plane, in the format kubectl and @kubernetes/client-node
// read, with everything embedded (no paths to files that a cleanup might remove first).
import { writeFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';

export type KubeconfigCredential = { readonly clientCertPem: string; readonly clientKeyPem: string } | { readonly token: string };

export interface KubeconfigSpec {
  readonly server: string;
  readonly caPem: string;
  /** Context and user name. */
  readonly user: string;
  readonly credential: KubeconfigCredential;
  /** Default namespace of the context. */
  readonly namespace?: string;
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

export function kubeconfigYaml(spec: KubeconfigSpec): string {
  const cluster = 'mandate-test';
  const user = 'token' in spec.credential ? { token: spec.credential.token } : { 'client-certificate-data': b64(spec.credential.clientCertPem), 'client-key-data': b64(spec.credential.clientKeyPem) };
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server: spec.server, 'certificate-authority-data': b64(spec.caPem) } }],
    users: [{ name: spec.user, user }],
    contexts: [{ name: spec.user, context: { cluster, user: spec.user, ...(spec.namespace ? { namespace: spec.namespace } : {}) } }],
    'current-context': spec.user,
  });
}

/** Writes the kubeconfig readable by its owner only: it holds a private key or a token. */
export async function writeKubeconfig(path: string, spec: KubeconfigSpec): Promise<string> {
  await writeFile(path, kubeconfigYaml(spec), { mode: 0o600 });
  return path;
}

/** A client-node KubeConfig loaded from a kubeconfig file. */
export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}
