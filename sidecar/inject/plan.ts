// decide + patch in one call, for the webhook and `mandate inject`.
import type { AgentIdentity } from '../../crds/generated/types.ts';
import type { InjectorConfig } from './config.ts';
import { decideInjection, type InjectInput } from './decide.ts';
import { injectionPatch } from './patch.ts';
import type { JsonPatchOp } from './pointer.ts';

export type InjectionPlan =
  | { readonly action: 'inject'; readonly identity: AgentIdentity; readonly patch: JsonPatchOp[] }
  | { readonly action: 'skip'; readonly reason: string }
  | { readonly action: 'refuse'; readonly message: string };

/** `interception(identity)`: does any tool this identity may reach have TLS interception on? */
export function planInjection(input: InjectInput, config: InjectorConfig, interception: (identity: AgentIdentity) => boolean): InjectionPlan {
  const decision = decideInjection(input, config);
  if (decision.action !== 'inject') return decision;
  const patch = injectionPatch(input.pod, decision.identity, config, { interception: interception(decision.identity) });
  return { action: 'inject', identity: decision.identity, patch };
}
