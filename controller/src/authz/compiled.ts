// What the store compiles each snapshot into before publishing it: the tool index and the
// policy index. Problems from either block publication, so a snapshot is served whole or not at all.
import { compilePolicies } from '../policy/compile.ts';
import type { PolicyIndex } from '../policy/types.ts';
import type { ManifestProblem, Snapshot } from '../store/snapshot.ts';
import { compileTools, type ToolIndex } from './tools.ts';

export interface Compiled {
  readonly policies: PolicyIndex;
  readonly tools: ToolIndex;
  readonly warnings: readonly ManifestProblem[];
}

export function compileSnapshot(snapshot: Snapshot, trustDomain: string): { compiled: Compiled; problems: ManifestProblem[] } {
  const tools = compileTools(snapshot);
  const policies = compilePolicies(snapshot, { trustDomain });
  return {
    compiled: { tools: tools.index, policies: policies.index, warnings: policies.warnings },
    problems: [...tools.problems, ...policies.problems],
  };
}
