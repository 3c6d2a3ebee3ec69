// The ObjectMeta checks the API server makes for every kind, so a folder that loads standalone
// also applies to a cluster: names are DNS-1123 subdomains, namespaces DNS-1123 labels, and label
// keys and values have the Kubernetes syntax (policies select identities by them).
import type { Path } from './field-path.ts';

export interface MetaIssue {
  readonly path: Path;
  readonly message: string;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export const isDns1123Subdomain = (s: string): boolean => s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
export const isDns1123Label = (s: string): boolean => s.length <= 63 && DNS1123_LABEL.test(s);

function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return 'key prefix must be a DNS-1123 subdomain';
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return 'key name must be 1-63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric';
  }
  return undefined;
}

export function checkMetadata(meta: Record<string, unknown>): MetaIssue[] {
  const issues: MetaIssue[] = [];
  const { name, namespace, labels, annotations } = meta;
  if (typeof name === 'string' && !isDns1123Subdomain(name)) {
    issues.push({
      path: ['metadata', 'name'],
      message: `invalid name ${JSON.stringify(name.slice(0, 64))}: must be a DNS-1123 subdomain (lower-case alphanumerics, "-" and ".", at most 253 characters, starting and ending with an alphanumeric)`,
    });
  }
  if (typeof namespace === 'string' && !isDns1123Label(namespace)) {
    issues.push({
      path: ['metadata', 'namespace'],
      message: `invalid namespace ${JSON.stringify(namespace.slice(0, 64))}: must be a DNS-1123 label (lower-case alphanumerics and "-", at most 63 characters)`,
    });
  }
  if (labels !== null && typeof labels === 'object') {
    for (const [key, value] of Object.entries(labels)) {
      const keyProblem = qualifiedNameProblem(key);
      if (keyProblem) issues.push({ path: ['metadata', 'labels', key], message: `invalid label key: ${keyProblem}` });
      if (typeof value === 'string' && value !== '' && (value.length > 63 || !QUALIFIED_NAME.test(value))) {
        issues.push({
          path: ['metadata', 'labels', key],
          message: 'invalid label value: must be at most 63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric',
        });
      }
    }
  }
  if (annotations !== null && typeof annotations === 'object') {
    for (const key of Object.keys(annotations)) {
      const keyProblem = qualifiedNameProblem(key);
      if (keyProblem) issues.push({ path: ['metadata', 'annotations', key], message: `invalid annotation key: ${keyProblem}` });
    }
  }
  return issues;
}
