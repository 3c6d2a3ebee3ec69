// References between objects of one folder. The API server cannot check these (objects arrive in
// any order), but a standalone folder is loaded as a whole, so a tool whose credential Secret is
// missing, or a sub-agent whose parent does not exist, is a broken folder and must not be served.
import type { ManifestProblem } from './snapshot.ts';
import { formatPath, type Path } from './field-path.ts';
import type { ManifestSet } from './manifests.ts';
import { objectLabel } from './problems.ts';

export function checkReferences(set: ManifestSet): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const report = (label: string, path: Path, message: string): void => {
    const origin = set.origins.get(label);
    problems.push({
      ...(origin ? { file: origin.file, line: origin.document.lineOf(path) } : {}),
      object: label,
      field: formatPath(path),
      message,
    });
  };

  for (const tool of set.tools.values()) {
    const ref = tool.spec.credential?.secretRef;
    if (!ref) continue;
    const namespace = tool.metadata.namespace ?? 'default';
    const label = objectLabel('AgentTool', namespace, tool.metadata.name);
    const secretLabel = objectLabel('Secret', namespace, ref.name);
    const secret = set.secrets.get(`${namespace}/${ref.name}`);
    if (!secret) {
      // A Secret that is present but broken has its own problem; do not report it twice.
      if (!set.origins.has(secretLabel)) {
        report(label, ['spec', 'credential', 'secretRef', 'name'], `${secretLabel} does not exist; the credential Secret must be in the tool's namespace`);
      }
    } else if (!secret.values.has(ref.key)) {
      report(label, ['spec', 'credential', 'secretRef', 'key'], `${secretLabel} has no key ${JSON.stringify(ref.key)}`);
    }
  }

  for (const identity of set.identities.values()) {
    const parent = identity.spec.parent;
    if (parent === undefined) continue;
    const namespace = identity.metadata.namespace ?? 'default';
    const label = objectLabel('AgentIdentity', namespace, identity.metadata.name);
    if (!set.identities.has(`${namespace}/${parent}`)) {
      if (!set.origins.has(objectLabel('AgentIdentity', namespace, parent))) {
        report(label, ['spec', 'parent'], `parent AgentIdentity ${namespace}/${parent} does not exist (a parent must be in the same namespace)`);
      }
      continue;
    }
    const chain = [identity.metadata.name];
    let next: string | undefined = parent;
    while (next !== undefined && chain.length <= set.identities.size) {
      chain.push(next);
      if (next === identity.metadata.name) {
        report(label, ['spec', 'parent'], `parent chain is a cycle: ${chain.join(' -> ')}`);
        break;
      }
      next = set.identities.get(`${namespace}/${next}`)?.spec.parent;
    }
  }
  return problems;
}
