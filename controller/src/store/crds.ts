// The CRD YAML under crds/ is the source of truth for what a valid object is; standalone mode
// reads it at runtime instead of keeping a second copy of the schemas in code.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { MandateError } from '../errors.ts';

export const defaultCrdDir = fileURLToPath(new URL('../../../crds/', import.meta.url));

/** An OpenAPI v3 schema node as CRDs spell it (structural, with x-kubernetes-* extensions). */
export type OpenApiSchema = Record<string, unknown>;

export interface CrdVersion {
  readonly file: string;
  /** `group/version`, e.g. `mandate.dev/v1alpha1`. */
  readonly apiVersion: string;
  readonly kind: string;
  readonly schema: OpenApiSchema;
}

interface CrdDocument {
  kind?: unknown;
  spec?: {
    group?: unknown;
    names?: { kind?: unknown };
    versions?: { name?: unknown; served?: unknown; schema?: { openAPIV3Schema?: unknown } }[];
  };
}

function invalid(file: string, why: string): MandateError {
  return new MandateError('CONFIG_INVALID', `CRD ${file} is not usable: ${why}`, { file });
}

export function crdVersionsOf(text: string, file: string): CrdVersion[] {
  const doc = parse(text) as CrdDocument | null;
  if (doc?.kind !== 'CustomResourceDefinition') throw invalid(file, 'not a CustomResourceDefinition');
  const group = doc.spec?.group;
  const kind = doc.spec?.names?.kind;
  if (typeof group !== 'string' || typeof kind !== 'string') throw invalid(file, 'spec.group or spec.names.kind missing');
  const out: CrdVersion[] = [];
  for (const v of doc.spec?.versions ?? []) {
    if (v.served === false) continue;
    const schema = v.schema?.openAPIV3Schema;
    if (typeof v.name !== 'string' || schema === null || typeof schema !== 'object') {
      throw invalid(file, 'a served version has no name or no openAPIV3Schema');
    }
    out.push({ file, apiVersion: `${group}/${v.name}`, kind, schema: schema as OpenApiSchema });
  }
  return out;
}

export async function loadCrds(dir: string = defaultCrdDir): Promise<CrdVersion[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort();
  } catch (err) {
    throw new MandateError('CONFIG_INVALID', `cannot read CRD directory ${dir}: ${(err as Error).message}`, { dir }, { cause: err });
  }
  const out: CrdVersion[] = [];
  for (const name of names) {
    const file = join(dir, name);
    out.push(...crdVersionsOf(await readFile(file, 'utf8'), file));
  }
  if (out.length === 0) throw new MandateError('CONFIG_INVALID', `no CRDs found in ${dir}`, { dir });
  return out;
}
