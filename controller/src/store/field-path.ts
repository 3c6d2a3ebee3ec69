// Field paths in problems use the kube-apiserver's notation, `.spec.rules[2].when`, with
// `['key']` for map keys that are not identifiers (labels such as `app.kubernetes.io/name`).

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += `.${seg}`;
    else out += `['${seg.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}']`;
  }
  return out;
}

/** Parses a relative CEL `fieldPath` such as `.spec.ports[0]` or `.labels['a.b/c']`; undefined if malformed. */
export function parseFieldPath(text: string): PathSegment[] | undefined {
  const out: PathSegment[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '.') {
      const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(text.slice(i + 1));
      if (!m) return undefined;
      out.push(m[0]);
      i += 1 + m[0].length;
    } else if (c === '[') {
      const rest = text.slice(i);
      const index = /^\[(\d+)\]/.exec(rest);
      const quoted = /^\['((?:[^'\\]|\\.)*)'\]/.exec(rest);
      if (index?.[1] !== undefined) {
        out.push(Number(index[1]));
        i += index[0].length;
      } else if (quoted?.[1] !== undefined) {
        out.push(quoted[1].replace(/\\(.)/g, '$1'));
        i += quoted[0].length;
      } else return undefined;
    } else return undefined;
  }
  return out;
}

/** Turns an ajv instancePath (JSON pointer) into segments, numbering only where the data is an array. */
export function pointerToPath(pointer: string, data: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let node: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      out.push(Number(key));
      node = node[Number(key)];
    } else {
      out.push(key);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

/** Whether `inner` lies at or below `outer`. */
export function isWithin(inner: Path, outer: Path): boolean {
  return outer.length <= inner.length && outer.every((seg, i) => inner[i] === seg);
}
