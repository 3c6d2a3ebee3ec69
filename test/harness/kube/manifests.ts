// Small Mandate manifests for integration tests, in the shape the API server stores them.
import type { AgentIdentity } from '../../../crds/generated/types.ts';

const apiVersion = 'mandate.dev/v1alpha1';

export const identityManifest = (name: string, spec: Partial<AgentIdentity['spec']> = {}) => ({
  apiVersion,
  kind: 'AgentIdentity',
  metadata: { name },
  spec: { owner: 'team@example.com', serviceAccount: name, ...spec },
});

/** An AgentPolicy for the identity `agent` with one rule. */
export const policyManifest = (name: string, rule: Record<string, unknown>) => ({
  apiVersion,
  kind: 'AgentPolicy',
  metadata: { name },
  spec: { targets: { identities: ['agent'] }, rules: [rule] },
});

/** An AgentTool at `<name>.example.com` with one action, files.delete; a credential when given a Secret. */
export const toolManifest = (name: string, secretName?: string) => ({
  apiVersion,
  kind: 'AgentTool',
  metadata: { name },
  spec: {
    hosts: [`${name}.example.com`],
    ...(secretName !== undefined ? { credential: { secretRef: { name: secretName, key: 'token' } } } : {}),
    actions: [{ name: 'files.delete', http: { method: 'DELETE', path: '/files/{id}' } }],
  },
});
