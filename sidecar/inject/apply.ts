// A minimal RFC 6902 apply (add, replace, remove): what the API server does with the webhook's
// patch, so `mandate inject` and the golden tests show exactly the pod that would be stored.
import { unescapeToken, type JsonPatchOp } from './pointer.ts';

export class PatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatchError';
  }
}

type Container = Record<string, unknown> | unknown[];

function isContainer(v: unknown): v is Container {
  return typeof v === 'object' && v !== null;
}

function parse(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new PatchError(`JSON pointer "${path}" does not start with "/"`);
  return path.slice(1).split('/').map(unescapeToken);
}

function arrayIndex(arr: unknown[], token: string, path: string, forAdd: boolean): number {
  if (forAdd && token === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`"${token}" in ${path} is not an array index`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new PatchError(`index ${i} in ${path} is out of bounds (length ${arr.length})`);
  return i;
}

function applyOne(doc: unknown, op: JsonPatchOp): unknown {
  const tokens = parse(op.path);
  const last = tokens.pop();
  if (last === undefined) {
    if (op.op === 'remove') throw new PatchError('cannot remove the whole document');
    return structuredClone(op.value);
  }
  let parent: unknown = doc;
  for (const t of tokens) {
    if (Array.isArray(parent)) parent = parent[arrayIndex(parent, t, op.path, false)];
    else if (isContainer(parent) && Object.hasOwn(parent, t)) parent = (parent as Record<string, unknown>)[t];
    else throw new PatchError(`${op.path}: "${t}" does not exist`);
  }
  if (!isContainer(parent)) throw new PatchError(`${op.path}: parent is not an object or array`);
  if (Array.isArray(parent)) {
    const i = arrayIndex(parent, last, op.path, op.op === 'add');
    if (op.op === 'add') parent.splice(i, 0, structuredClone(op.value));
    else if (op.op === 'replace') parent[i] = structuredClone(op.value);
    else parent.splice(i, 1);
    return doc;
  }
  if (op.op !== 'add' && !Object.hasOwn(parent, last)) throw new PatchError(`${op.path}: "${last}" does not exist`);
  if (op.op === 'remove') delete parent[last];
  else parent[last] = structuredClone(op.value);
  return doc;
}

/** Applies `ops` in order to a copy of `doc`; the input is never modified. */
export function applyPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  let out: unknown = structuredClone(doc);
  for (const op of ops) out = applyOne(out, op);
  return out as T;
}
