// The hash chain. The writer and the verifier both go through recordHash and checkRecordLine, so
// there is exactly one definition of what a valid stored line is.
//
// Byte rule (stable; changing it is a schema change):
//   unhashed = the stored record without its "hash" member, i.e. { seq, prev, ...body }
//   hash     = lowercase hex of SHA-256( hexDecode(prev) ‖ UTF-8(canonicalJson(unhashed)) )
// where hexDecode(prev) is the 32 raw bytes of the previous record's hash (32 zero bytes for the
// first record, whose prev is GENESIS_HASH), and ‖ is concatenation. The stored line is
//   UTF-8(canonicalJson({ ...unhashed, hash })) followed by one "\n" (0x0A).
// seq starts at 1 and increases by exactly 1 across segments. The prev field is hashed twice (raw
// and as hex inside the JSON); that is redundant but harmless, and keeps each line self-describing.
import { createHash } from 'node:crypto';
import { canonicalExtend, canonicalJson } from './canonical.ts';
import type { AuditRecord, AuditRecordBody } from './record.ts';

export const GENESIS_HASH = '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const RESERVED = ['seq', 'prev', 'hash'] as const;

export function isHash(value: unknown): value is string {
  return typeof value === 'string' && HEX64.test(value);
}

/** SHA-256(prev bytes ‖ canonical JSON of the record without "hash"), hex. */
export function recordHash(prev: string, unhashed: Readonly<Record<string, unknown>>): string {
  if (!isHash(prev)) throw new TypeError('prev must be 64 lowercase hex digits');
  return createHash('sha256').update(Buffer.from(prev, 'hex')).update(canonicalJson(unhashed), 'utf8').digest('hex');
}

export interface ChainedLine {
  readonly seq: number;
  readonly hash: string;
  /** The stored line including its trailing newline. */
  readonly line: string;
}

/** Places a body at (seq, prev) in the chain. Throws if the body is not canonical-JSON data. */
export function chainRecord(seq: number, prev: string, body: AuditRecordBody): ChainedLine {
  for (const key of RESERVED) {
    if (Object.hasOwn(body, key)) throw new TypeError(`an audit record body must not carry "${key}"`);
  }
  if (!Number.isSafeInteger(seq) || seq < 1 || !isHash(prev)) throw new TypeError('seq must be a positive integer and prev 64 lowercase hex digits');
  // The same bytes as recordHash(prev, unhashed) and canonicalJson({ ...unhashed, hash }), with the
  // record's members encoded once (the tests hold the two ways equal).
  const unhashed = { ...body, seq, prev };
  let hash = '';
  const texts = canonicalExtend(unhashed, 'hash', (without) => {
    hash = createHash('sha256').update(Buffer.from(prev, 'hex')).update(without, 'utf8').digest('hex');
    return hash;
  });
  return { seq, hash, line: texts.with + '\n' };
}

export type LineCheck =
  | { readonly ok: true; readonly record: AuditRecord }
  | { readonly ok: false; readonly kind: 'malformed' | 'edited'; readonly seq?: number; readonly message: string };

/**
 * Checks one stored line (without its newline) in isolation: it parses, has a chain position, is in
 * canonical form byte for byte (so no byte can change without changing the hash input), and its
 * hash is right for its own prev. Linkage to the neighbours is the caller's business.
 */
export function checkRecordLine(raw: Uint8Array): LineCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    return { ok: false, kind: 'malformed', message: 'line is not JSON' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, kind: 'malformed', message: 'line is not a JSON object' };
  }
  const rec = parsed as Record<string, unknown>;
  const seq = Number.isSafeInteger(rec.seq) && (rec.seq as number) >= 1 ? (rec.seq as number) : undefined;
  if (seq === undefined || !isHash(rec.prev) || !isHash(rec.hash) || typeof rec.kind !== 'string') {
    return { ok: false, kind: 'malformed', message: 'record lacks a valid seq, prev, hash or kind' };
  }
  let canonical: Buffer;
  try {
    canonical = Buffer.from(canonicalJson(rec), 'utf8');
  } catch {
    return { ok: false, kind: 'malformed', seq, message: 'record is not canonical JSON data' };
  }
  if (!canonical.equals(raw)) return { ok: false, kind: 'edited', seq, message: `record ${seq} is not in canonical form: its bytes were changed` };
  const { hash, ...unhashed } = rec;
  if (recordHash(rec.prev, unhashed) !== hash) return { ok: false, kind: 'edited', seq, message: `record ${seq} does not match its hash: its content was changed` };
  return { ok: true, record: rec as unknown as AuditRecord };
}

/** Is this line at least JSON? A crash leaves garbage or a cut line, never a whole JSON object. */
export function isJsonLine(raw: Uint8Array): boolean {
  try {
    JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

export interface LineSpan {
  /** Byte offset of the first byte of the line. */
  readonly start: number;
  /** Byte offset just past the line's last byte (the newline excluded). */
  readonly end: number;
  /** Ends with a newline; the last span of a file cut mid-write does not. */
  readonly terminated: boolean;
}

/** Splits a segment file into lines; an empty trailing remainder is not a line. */
export function splitLines(buf: Uint8Array): LineSpan[] {
  const spans: LineSpan[] = [];
  let start = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    if (nl === -1) {
      spans.push({ start, end: buf.length, terminated: false });
      break;
    }
    spans.push({ start, end: nl, terminated: true });
    start = nl + 1;
  }
  return spans;
}
