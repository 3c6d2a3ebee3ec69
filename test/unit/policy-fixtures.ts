// Builders for the policy engine's tests and benchmark: plain objects typed with the generated
// CRD types, so a CRD change that breaks a fixture breaks the type check.
import type { AgentIdentity, AgentIdentitySpec, AgentPolicy, AgentTool, PolicyRule } from '../../crds/generated/types.ts';
import type { Classified, HttpRequestAttributes, PeerIdentity } from '../../controller/src/authz/types.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';
import { objectKey } from '../../controller/src/store/snapshot.ts';

export const TRUST_DOMAIN = 'cluster.local';

export function identity(namespace: string, name: string, opts: { labels?: Record<string, string>; spec?: Partial<AgentIdentitySpec> } = {}): AgentIdentity {
  return {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentIdentity',
    metadata: { name, namespace, ...(opts.labels ? { labels: opts.labels } : {}) },
    spec: { owner: 'team-a@example.com', serviceAccount: name, ...opts.spec },
  };
}

export type RuleInput = PolicyRule;

export function policy(
  namespace: string,
  name: string,
  rules: RuleInput[],
  opts: { targets?: AgentPolicy['spec']['targets']; mode?: 'Enforce' | 'DryRun'; generation?: number } = {},
): AgentPolicy {
  return {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentPolicy',
    metadata: { name, namespace, generation: opts.generation ?? 1 },
    spec: {
      ...(opts.mode ? { mode: opts.mode } : {}),
      targets: opts.targets ?? { identities: ['agent'] },
      rules: rules as AgentPolicy['spec']['rules'],
    },
  };
}

export function tool(namespace: string, name: string, actions: string[]): AgentTool {
  return {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentTool',
    metadata: { name, namespace },
    spec: {
      hosts: [`${name}.example.com`],
      actions: actions.map((a) => ({ name: a, http: { method: 'POST' as const, path: `/${a.replaceAll('.', '/')}` } })) as AgentTool['spec']['actions'],
    },
  };
}

export function snapshot(parts: { identities?: AgentIdentity[]; policies?: AgentPolicy[]; tools?: AgentTool[] }, revision = 1): Snapshot {
  const byKey = <T extends AgentIdentity | AgentPolicy | AgentTool>(items: T[] = []): Map<string, T> =>
    new Map(items.map((i) => [objectKey(i.metadata), i]));
  return {
    revision,
    loadedAt: '2025-01-01T00:00:00Z',
    source: 'test',
    identities: byKey(parts.identities),
    policies: byKey(parts.policies),
    tools: byKey(parts.tools),
    secrets: new Map(),
  };
}

export function spiffe(namespace: string, name: string): string {
  return `spiffe://${TRUST_DOMAIN}/ns/${namespace}/agent/${name}`;
}

export function peer(namespace: string, name: string, serial = '0a1b'): PeerIdentity {
  return { spiffeId: spiffe(namespace, name), namespace, name, serial };
}

export function request(over: Partial<HttpRequestAttributes> = {}): HttpRequestAttributes {
  return {
    id: 'req-1',
    method: 'POST',
    host: 'api.github.com',
    path: '/repos/acme/app/pulls/1/merge',
    query: {},
    headers: { 'content-type': 'application/json' },
    scheme: 'https',
    bodyTruncated: false,
    ...over,
  };
}

export function classified(action: string, params: Record<string, unknown> = {}, over: Partial<Classified> = {}): Classified {
  return { tool: 'agents/github', action, classification: 'internal', reversible: false, params, ...over };
}
