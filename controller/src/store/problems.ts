// How problems name things: objects as `Kind namespace/name`, and one line per problem for
// logs and the CLI.
import type { ManifestProblem } from './snapshot.ts';

export const objectLabel = (kind: string, namespace: string, name: string): string => `${kind} ${namespace}/${name}`;

/** `file:line: object field: message`. */
export function formatProblem(p: ManifestProblem): string {
  const where = p.file ? `${p.file}${p.line ? `:${p.line}` : ''}: ` : '';
  return `${where}${p.object}${p.field ? ` ${p.field}` : ''}: ${p.message}`;
}
