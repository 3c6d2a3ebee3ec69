// Canonical JSON after RFC 8785 (JCS): the one byte form that audit hashes and checkpoint
// signatures are computed over, so that a verifier in any language can recompute them.
// - object members sorted by their names' UTF-16 code units (what Array#sort does by default);
// - no whitespace; strings escaped as ECMAScript JSON.stringify escapes them;
// - numbers in ECMAScript Number#toString form (-0 becomes 0); NaN and ±Infinity are refused;
// - members whose value is undefined are dropped (optional fields), undefined anywhere else is refused.
// JCS requires I-JSON input, so strings with lone surrogates are refused too: their UTF-8 form would
// be ambiguous. Anything that is not plain JSON data (Date, Map, Buffer, class instances, bigint,
// functions) is refused instead of being coerced, so a caller's mistake cannot silently change what
// gets hashed.
import { MandateError } from '../errors.ts';

const MAX_DEPTH = 200;

/** Thrown inside the walk; canonicalJson adds the path once, so the fast path builds no strings. */
class Refused extends Error {
  readonly path: (string | number)[] = [];
}

function isPlainObject(value: object): value is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// Characters JSON.stringify (and so JCS) escapes; most strings have none and skip the call.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;

function encodeString(s: string): string {
  if (!s.isWellFormed()) throw new Refused('string with a lone surrogate');
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

function encode(value: unknown, depth: number): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new Refused(`non-finite number ${String(value)}`);
      // Number#toString is exactly the ECMAScript serialisation JCS prescribes; it prints -0 as "0".
      return String(value);
    case 'string':
      return encodeString(value);
    case 'object':
      break;
    default:
      throw new Refused(`unsupported value of type ${typeof value}`);
  }
  if (depth >= MAX_DEPTH) throw new Refused(`nesting deeper than ${MAX_DEPTH}`);
  let out: string;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      try {
        if (item === undefined) throw new Refused('undefined array element');
        out += (i === 0 ? '' : ',') + encode(item, depth + 1);
      } catch (err) {
        if (err instanceof Refused) err.path.unshift(i);
        throw err;
      }
    }
    return out + ']';
  }
  if (!isPlainObject(value)) throw new Refused('object that is not plain JSON data');
  out = '{';
  let first = true;
  for (const key of Object.keys(value).sort()) {
    const member = value[key];
    if (member === undefined) continue;
    try {
      out += (first ? '' : ',') + encodeString(key) + ':' + encode(member, depth + 1);
    } catch (err) {
      if (err instanceof Refused) err.path.unshift(key);
      throw err;
    }
    first = false;
  }
  return out + '}';
}

function pathText(path: readonly (string | number)[]): string {
  const text = '$' + path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
  return text.length > 120 ? text.slice(0, 120) + '…' : text;
}

/** RFC 8785 canonical JSON text of a JSON value. Throws MandateError INTERNAL on non-JSON input. */
export function canonicalJson(value: unknown): string {
  try {
    if (value === undefined) throw new Refused('undefined value');
    return encode(value, 0);
  } catch (err) {
    if (err instanceof Refused) throw new MandateError('INTERNAL', `canonical JSON: ${err.message} at ${pathText(err.path)}`);
    throw err;
  }
}

/** The UTF-8 bytes of the canonical JSON text: what gets hashed and signed. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

/**
 * Canonical JSON of a plain object, then of the same object with one member added whose value is
 * computed from the first text; the object's members are encoded once. The chain hashes the first
 * text and stores the second (a record and its hash).
 */
export function canonicalExtend(
  obj: Readonly<Record<string, unknown>>, key: string, valueOf: (without: string) => unknown,
): { readonly without: string; readonly with: string } {
  if (Object.hasOwn(obj, key)) throw new MandateError('INTERNAL', `canonical JSON: member "${key}" already present`);
  try {
    const keys = Object.keys(obj).sort();
    const texts: string[] = [];
    let at = -1;
    for (const k of keys) {
      const member = obj[k];
      if (member === undefined) continue;
      if (at === -1 && k > key) at = texts.length;
      try {
        texts.push(encodeString(k) + ':' + encode(member, 1));
      } catch (err) {
        if (err instanceof Refused) err.path.unshift(k);
        throw err;
      }
    }
    const without = `{${texts.join(',')}}`;
    texts.splice(at === -1 ? texts.length : at, 0, encodeString(key) + ':' + encode(valueOf(without), 1));
    return { without, with: `{${texts.join(',')}}` };
  } catch (err) {
    if (err instanceof Refused) throw new MandateError('INTERNAL', `canonical JSON: ${err.message} at ${pathText(err.path)}`);
    throw err;
  }
}
