// Turns a CRD's structural OpenAPI schema into the JSON Schema ajv checks, with the
// kube-apiserver's semantics: objects are closed unless they preserve unknown fields (the API
// server prunes unknown fields, and with fieldValidation=Strict rejects them, which is what a
// standalone folder should do: a misspelt field must not silently disappear), and metadata is
// checked as ObjectMeta rather than the schema's opaque `type: object`.
import type { OpenApiSchema } from './crds.ts';

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;
const nullableString = { type: 'string', nullable: true } as const;

/** The ObjectMeta fields a manifest may carry (including what `kubectl get -o yaml` adds). */
export const objectMetaSchema: OpenApiSchema = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string' },
    generateName: { type: 'string' },
    namespace: { type: 'string' },
    labels: stringMap,
    annotations: stringMap,
    uid: { type: 'string' },
    resourceVersion: { type: 'string' },
    generation: { type: 'integer' },
    creationTimestamp: nullableString,
    deletionTimestamp: nullableString,
    deletionGracePeriodSeconds: { type: 'integer' },
    finalizers: { type: 'array', items: { type: 'string' } },
    ownerReferences: { type: 'array', items: { type: 'object' } },
    managedFields: { type: 'array', items: { type: 'object' } },
    selfLink: { type: 'string' },
  },
};

const isRecord = (v: unknown): v is OpenApiSchema => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Converts one schema node. Inside allOf/anyOf/oneOf/not, kube schemas only constrain values
 * (they may not declare fields), so objects there are left open.
 */
export function toAjvSchema(node: OpenApiSchema, inJunctor = false): OpenApiSchema {
  const out: OpenApiSchema = { ...node };
  if (isRecord(node.properties)) {
    out.properties = Object.fromEntries(Object.entries(node.properties).map(([k, v]) => [k, isRecord(v) ? toAjvSchema(v, inJunctor) : v]));
  }
  if (isRecord(node.items)) out.items = toAjvSchema(node.items, inJunctor);
  if (isRecord(node.additionalProperties)) out.additionalProperties = toAjvSchema(node.additionalProperties, inJunctor);
  for (const junctor of ['allOf', 'anyOf', 'oneOf'] as const) {
    const list = node[junctor];
    if (Array.isArray(list)) out[junctor] = list.map((v: unknown) => (isRecord(v) ? toAjvSchema(v, true) : v));
  }
  if (isRecord(node.not)) out.not = toAjvSchema(node.not, true);
  const isObject = node.type === 'object' || isRecord(node.properties);
  if (isObject && !inJunctor && !('additionalProperties' in node) && node['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

/** The schema for a whole object of one kind: converted, with ObjectMeta for metadata. */
export function rootSchema(schema: OpenApiSchema): OpenApiSchema {
  const out = toAjvSchema(schema);
  const properties = isRecord(out.properties) ? out.properties : {};
  out.properties = { ...properties, apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: objectMetaSchema };
  out.required = [...new Set([...(Array.isArray(out.required) ? (out.required as string[]) : []), 'metadata'])];
  return out;
}
