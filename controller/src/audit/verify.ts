// `mandate audit verify`: walks every segment in order and reports the FIRST thing wrong, precise
// enough to open the file at the line: a changed byte, a removed, swapped or duplicated record, a
// segment cut short behind its seal or behind the head checkpoint, a deleted segment, a forged or
// edited checkpoint. Record lines are checked with the same functions the writer uses (chain.ts).
//
// Which key: by default the public keys stored in the folder (audit-signing*.pub.pem). That proves
// the records were not changed after the key holder signed them, but someone who can rewrite the
// whole folder can also swap in their own key and re-sign everything. Pinning the key
// (publicKeyPem, `--key`), taken from a copy kept elsewhere, rules that out.
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { asMandateError } from '../errors.ts';
import { GENESIS_HASH, checkRecordLine, isJsonLine, splitLines } from './chain.ts';
import { checkCheckpointSignature, parseCheckpoint, type Checkpoint } from './checkpoint.ts';
import { HEAD_FILE, listAuditDir, sealName, segmentName, type AuditListing } from './files.ts';
import { importAuditPublicKey } from './signer.ts';

export type VerifyProblemKind = 'edited' | 'removed' | 'reordered' | 'truncated' | 'bad-signature' | 'malformed' | 'missing-segment';

export interface VerifyProblem {
  readonly kind: VerifyProblemKind;
  /** The segment concerned, e.g. `segment-000002.jsonl`. */
  readonly segment: string;
  /** The file that shows the problem: the segment, its seal, or head.json. */
  readonly file: string;
  /** 1-based line in the segment. */
  readonly line?: number;
  readonly seq?: number;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  /** Records that verified before the first problem (all of them when ok). */
  readonly records: number;
  readonly segments: number;
  /** Seq of the last record that verified. */
  readonly lastSeq: number;
  /** Key ids the checkpoints were checked against. */
  readonly keyIds: readonly string[];
  readonly keySource: 'pinned' | 'folder';
  /** Summary, including which key was used and what that proves. */
  readonly message: string;
  /** Conditions that are not tampering, e.g. a torn last line left by a crash. */
  readonly warnings: readonly string[];
  readonly problem?: VerifyProblem;
}

export interface VerifyOptions {
  /** Trust only this key (or these keys, across a key change) instead of the folder's own. */
  readonly publicKeyPem?: string | readonly string[];
}

interface Keys {
  readonly map: Map<string, KeyObject>;
  readonly source: 'pinned' | 'folder';
  readonly description: string;
}

async function loadKeys(dir: string, listing: AuditListing, options: VerifyOptions, warnings: string[]): Promise<Keys> {
  const map = new Map<string, KeyObject>();
  if (options.publicKeyPem !== undefined) {
    const pems = typeof options.publicKeyPem === 'string' ? [options.publicKeyPem] : options.publicKeyPem;
    for (const pem of pems) {
      const { keyId, key } = importAuditPublicKey(pem);
      map.set(keyId, key);
    }
    return { map, source: 'pinned', description: `the pinned key ${[...map.keys()].join(', ')}` };
  }
  for (const file of listing.publicKeys) {
    try {
      const { keyId, key } = importAuditPublicKey(await readFile(join(dir, file), 'utf8'));
      map.set(keyId, key);
    } catch {
      warnings.push(`${file} is not a usable P-256 public key; ignored`);
    }
  }
  const ids = [...map.keys()].join(', ') || 'none';
  return {
    map,
    source: 'folder',
    description: `the folder's own key ${ids} (${listing.publicKeys.join(', ') || 'no key file'}); this does not rule out a rewrite of the whole folder, pin the key for that`,
  };
}

class Walk {
  records = 0;
  lastSeq = 0;
  lastHash = GENESIS_HASH;
  readonly warnings: string[] = [];
}

function lookupSeq(bytes: Uint8Array, spans: ReturnType<typeof splitLines>, from: number, seq: number): boolean {
  for (let j = from; j < spans.length; j++) {
    const s = spans[j]!;
    try {
      const v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + s.start, s.end - s.start).toString('utf8')) as { seq?: unknown };
      if (v.seq === seq) return true;
    } catch {
      // not a record; keep looking
    }
  }
  return false;
}

async function readCheckpoint(dir: string, file: string): Promise<Checkpoint | null> {
  return parseCheckpoint(await readFile(join(dir, file), 'utf8'));
}

export async function verifyAuditDir(dir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const abs = resolve(dir);
  const walk = new Walk();
  let listing: AuditListing;
  try {
    listing = await listAuditDir(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw asMandateError(err);
    const message = `audit folder ${abs} does not exist`;
    return { ok: false, records: 0, segments: 0, lastSeq: 0, keyIds: [], keySource: options.publicKeyPem ? 'pinned' : 'folder', message, warnings: [], problem: { kind: 'missing-segment', segment: '', file: abs, message } };
  }
  const keys = await loadKeys(abs, listing, options, walk.warnings);
  const segments = listing.segments;
  const max = segments.at(-1) ?? 0;

  const finish = (problem?: VerifyProblem): VerifyReport => {
    const summary = problem
      ? `FAILED at ${problem.file}${problem.line !== undefined ? ` line ${problem.line}` : ''}: ${problem.message}`
      : `verified ${walk.records} records in ${segments.length} segments (last seq ${walk.lastSeq})`;
    return {
      ok: problem === undefined,
      records: walk.records,
      segments: segments.length,
      lastSeq: walk.lastSeq,
      keyIds: [...keys.map.keys()],
      keySource: keys.source,
      message: `${summary}; checkpoint signatures checked with ${keys.description}`,
      warnings: walk.warnings,
      problem,
    };
  };
  const signatureProblem = (cp: Checkpoint, segment: string, file: string): VerifyProblem | null => {
    const sig = checkCheckpointSignature(cp, keys.map);
    if (!sig.ok) return { kind: 'bad-signature', segment, file, message: `${file}: ${sig.message} (keys used: ${keys.description})` };
    if (cp.segment !== segment) return { kind: 'bad-signature', segment, file, message: `${file} is a valid checkpoint of ${cp.segment}, not of ${segment}` };
    return null;
  };

  let head: Checkpoint | null = null;
  if (listing.hasHead) {
    head = await readCheckpoint(abs, HEAD_FILE);
    if (!head) return finish({ kind: 'malformed', segment: '', file: HEAD_FILE, message: `${HEAD_FILE} is not a well-formed checkpoint` });
  }
  let headChecked = false;

  for (let k = 1; k <= max; k++) {
    const name = segmentName(k);
    const sealFile = sealName(k);
    if (!segments.includes(k)) {
      return finish({ kind: 'missing-segment', segment: name, file: name, seq: walk.lastSeq + 1, message: `${name} is missing (records after ${walk.lastSeq} are gone)` });
    }
    const sealed = listing.seals.includes(k);
    const bytes = await readFile(join(abs, name));
    const spans = splitLines(bytes);
    const segStart = walk.lastSeq + 1;
    const startHash = walk.lastHash;
    const hashes: string[] = [];
    for (let i = 0; i < spans.length; i++) {
      const span = spans[i]!;
      const line = i + 1;
      const raw = bytes.subarray(span.start, span.end);
      const check = span.terminated ? checkRecordLine(raw) : null;
      const tornToEnd = (): boolean => spans.slice(i).every((s) => !s.terminated || !isJsonLine(bytes.subarray(s.start, s.end)));
      if (check === null || (!check.ok && !isJsonLine(raw) && tornToEnd())) {
        if (k === max && !sealed) {
          walk.warnings.push(`${name} ends in ${bytes.length - span.start} bytes of a torn write (line ${line}): a crash during a write, never acknowledged; the writer cuts it when it reopens`);
          break;
        }
        return finish({ kind: 'malformed', segment: name, file: name, line, message: `line ${line} is cut short or unparsable in a segment that is no longer written` });
      }
      if (!check.ok) return finish({ kind: check.kind, segment: name, file: name, line, seq: check.seq, message: check.message });
      const rec = check.record;
      const expect = walk.lastSeq + 1;
      if (rec.seq > expect) {
        if (lookupSeq(bytes, spans, i + 1, expect)) {
          return finish({ kind: 'reordered', segment: name, file: name, line, seq: rec.seq, message: `record ${rec.seq} comes before record ${expect}: records were swapped` });
        }
        const gap = rec.seq - expect === 1 ? `record ${expect} is` : `records ${expect}..${rec.seq - 1} are`;
        return finish({ kind: 'removed', segment: name, file: name, line, seq: rec.seq, message: `${gap} missing before record ${rec.seq}` });
      }
      if (rec.seq < expect) {
        return finish({ kind: 'reordered', segment: name, file: name, line, seq: rec.seq, message: `record ${rec.seq} appears after record ${expect - 1}: out of order or duplicated` });
      }
      if (rec.prev !== walk.lastHash) {
        return finish({ kind: 'edited', segment: name, file: name, line, seq: rec.seq, message: `record ${rec.seq} does not chain to record ${rec.seq - 1}: one of them was rewritten` });
      }
      walk.records++;
      walk.lastSeq = rec.seq;
      walk.lastHash = rec.hash;
      hashes.push(rec.hash);
    }
    const count = hashes.length;

    if (sealed) {
      const seal = await readCheckpoint(abs, sealFile);
      if (!seal || seal.type !== 'seal') return finish({ kind: 'malformed', segment: name, file: sealFile, message: `${sealFile} is not a well-formed seal` });
      const bad = signatureProblem(seal, name, sealFile);
      if (bad) return finish(bad);
      if (count < seal.count) {
        return finish({ kind: 'truncated', segment: name, file: name, line: count + 1, seq: segStart + count, message: `${sealFile} vouches for ${seal.count} records but ${name} holds ${count}: records were cut from its end` });
      }
      if (count > seal.count) {
        return finish({ kind: 'edited', segment: name, file: name, line: seal.count + 1, seq: segStart + seal.count, message: `${name} holds ${count} records but ${sealFile} vouches for ${seal.count}: records were added after sealing` });
      }
      if (seal.firstSeq !== segStart || seal.lastSeq !== walk.lastSeq || seal.lastHash !== walk.lastHash) {
        return finish({ kind: 'edited', segment: name, file: sealFile, line: count, seq: walk.lastSeq, message: `${name} does not match ${sealFile}: its records were rewritten and re-chained` });
      }
    } else if (k < max) {
      return finish({ kind: 'missing-segment', segment: name, file: sealFile, message: `${sealFile} is missing although later segments exist: nothing vouches for ${name}` });
    }

    if (head && head.segment === name) {
      headChecked = true;
      const bad = signatureProblem(head, name, HEAD_FILE);
      if (bad) return finish(bad);
      if (count < head.count) {
        return finish({ kind: 'truncated', segment: name, file: name, line: count + 1, seq: segStart + count, message: `${HEAD_FILE} vouches for ${head.count} records in ${name} (up to record ${head.lastSeq}) but it holds ${count}: records were cut from its end` });
      }
      const vouched = head.count === 0 ? startHash : hashes[head.count - 1];
      if (head.firstSeq !== segStart || head.lastSeq !== segStart + head.count - 1 || head.lastHash !== vouched) {
        return finish({ kind: 'edited', segment: name, file: HEAD_FILE, line: head.count || undefined, seq: head.lastSeq, message: `${name} does not match ${HEAD_FILE} at record ${head.lastSeq}: records were rewritten` });
      }
    }
  }

  if (head && !headChecked) {
    const bad = signatureProblem(head, head.segment, HEAD_FILE);
    if (bad) return finish(bad);
    return finish({ kind: 'missing-segment', segment: head.segment, file: head.segment, seq: head.firstSeq, message: `${HEAD_FILE} vouches for ${head.segment}, which is missing` });
  }
  const orphanSeal = listing.seals.find((n) => n > max);
  if (orphanSeal !== undefined) {
    return finish({ kind: 'missing-segment', segment: segmentName(orphanSeal), file: sealName(orphanSeal), message: `${sealName(orphanSeal)} exists but ${segmentName(orphanSeal)} is missing` });
  }
  if (!head && walk.records > 0) {
    return finish({ kind: 'truncated', segment: segmentName(max), file: HEAD_FILE, message: `${HEAD_FILE} is missing: records may have been cut from the end of ${segmentName(max)}` });
  }
  return finish();
}
