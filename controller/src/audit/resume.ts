// Where a writer continues after a restart. Only the last segment is read: its records must chain
// from the previous segment's seal, and the head checkpoint must still be inside it. A torn tail
// (the process or the machine died during a write) is the one damage repaired here, because those
// bytes were never acknowledged. Anything else is refused: appending to a damaged chain, or
// rewriting head.json over a truncation, would destroy the evidence `mandate audit verify` needs.
// Signatures are not checked here; that is verify's job, and a forged checkpoint can only make the
// writer refuse, never make it accept less than is on disk.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MandateError } from '../errors.ts';
import { GENESIS_HASH, checkRecordLine, isJsonLine, splitLines } from './chain.ts';
import { parseCheckpoint, type Checkpoint } from './checkpoint.ts';
import { HEAD_FILE, sealName, segmentName, type AuditListing } from './files.ts';

export interface ChainTip {
  readonly lastSeq: number;
  readonly lastHash: string;
}

export interface TornTail {
  /** Length of the segment once the tail is cut. */
  readonly validBytes: number;
  readonly droppedBytes: number;
  readonly droppedLines: number;
}

export interface ResumePlan extends ChainTip {
  /** Number of the segment to append to. */
  readonly segment: number;
  /** True when that segment file does not exist yet. */
  readonly create: boolean;
  readonly firstSeq: number;
  /** Records already in it. */
  readonly count: number;
  /** Cut from the end of the segment before appending. */
  readonly torn?: TornTail;
  /** The last segment found and its last record, or null for a new log. */
  readonly resumedFrom: { readonly segment: string; readonly lastSeq: number } | null;
}

function tampered(dir: string, message: string): MandateError {
  return new MandateError('AUDIT_TAMPERED', `${message}; refusing to append (run \`mandate audit verify ${dir}\`)`, { dir });
}

export interface LastSegment {
  readonly segment: number;
  readonly bytes: Uint8Array;
  /** Tip of the previous segment (its seal), or genesis for segment 1. */
  readonly prior: ChainTip;
  readonly seal: Checkpoint | null;
  readonly head: Checkpoint | null;
}

/** Pure core: the plan for appending after `last`, or an AUDIT_TAMPERED error. */
export function planResume(dir: string, last: LastSegment): ResumePlan {
  const name = segmentName(last.segment);
  const spans = splitLines(last.bytes);
  let expectSeq = last.prior.lastSeq + 1;
  let lastHash = last.prior.lastHash;
  let count = 0;
  let validBytes = 0;
  let torn: TornTail | undefined;
  const head = last.head && last.head.segment === name ? last.head : null;
  let headSeen = head !== null && head.count === 0 && head.lastHash === lastHash && head.lastSeq === last.prior.lastSeq;
  for (let i = 0; i < spans.length; i++) {
    const span = spans[i]!;
    const raw = last.bytes.subarray(span.start, span.end);
    const check = span.terminated ? checkRecordLine(raw) : null;
    // Torn: the line cut short, plus any garbage before it (a crash can leave zero-filled blocks),
    // as long as nothing from here to the end parses: a whole JSON line is never crash debris.
    const isTorn = (): boolean => spans.slice(i).every((s) => !s.terminated || !isJsonLine(last.bytes.subarray(s.start, s.end)));
    if (check === null || (!check.ok && !isJsonLine(raw) && isTorn())) {
      torn = { validBytes, droppedBytes: last.bytes.length - validBytes, droppedLines: spans.length - i };
      break;
    }
    if (!check.ok) throw tampered(dir, `${name} line ${i + 1}: ${check.message}`);
    const rec = check.record;
    if (rec.seq !== expectSeq || rec.prev !== lastHash) {
      throw tampered(dir, `${name} line ${i + 1}: record ${rec.seq} does not follow record ${expectSeq - 1}`);
    }
    count++;
    expectSeq++;
    lastHash = rec.hash;
    validBytes = span.end + 1;
    if (head && rec.seq === head.lastSeq) {
      if (rec.hash !== head.lastHash || count !== head.count) throw tampered(dir, `${name}: record ${rec.seq} differs from the head checkpoint`);
      headSeen = true;
    }
  }
  const tip: ChainTip = { lastSeq: expectSeq - 1, lastHash };
  if (head && !headSeen) {
    throw tampered(dir, `${name} ends at record ${tip.lastSeq} but ${HEAD_FILE} vouches for record ${head.lastSeq}: records were cut`);
  }
  const resumedFrom = { segment: name, lastSeq: tip.lastSeq };
  if (last.seal) {
    const s = last.seal;
    if (torn || s.count !== count || s.lastSeq !== tip.lastSeq || s.lastHash !== tip.lastHash) {
      throw tampered(dir, `${name} does not match its seal ${sealName(last.segment)}`);
    }
    return { segment: last.segment + 1, create: true, firstSeq: tip.lastSeq + 1, count: 0, ...tip, resumedFrom };
  }
  return { segment: last.segment, create: false, firstSeq: last.prior.lastSeq + 1, count, ...tip, torn, resumedFrom };
}

const NEW_LOG: ResumePlan = {
  segment: 1, create: true, firstSeq: 1, count: 0, lastSeq: 0, lastHash: GENESIS_HASH, resumedFrom: null,
};

async function readCheckpoint(dir: string, file: string): Promise<Checkpoint> {
  const parsed = parseCheckpoint(await readFile(join(dir, file), 'utf8'));
  if (!parsed) throw tampered(dir, `${file} is not a well-formed checkpoint`);
  return parsed;
}

/** Reads what planResume needs from the folder. */
export async function loadResumePlan(dir: string, listing: AuditListing): Promise<ResumePlan> {
  const last = listing.segments.at(-1);
  if (last === undefined) {
    if (listing.seals.length > 0 || listing.hasHead) throw tampered(dir, 'checkpoints exist but no segment does: segments were deleted');
    return NEW_LOG;
  }
  if (listing.seals.some((n) => n > last)) throw tampered(dir, `a seal exists for a segment after ${segmentName(last)}: segments were deleted`);
  let prior: ChainTip = { lastSeq: 0, lastHash: GENESIS_HASH };
  if (last > 1) {
    if (!listing.seals.includes(last - 1)) throw tampered(dir, `${segmentName(last - 1)} has no seal`);
    prior = await readCheckpoint(dir, sealName(last - 1));
  }
  const seal = listing.seals.includes(last) ? await readCheckpoint(dir, sealName(last)) : null;
  const head = listing.hasHead ? await readCheckpoint(dir, HEAD_FILE) : null;
  if (head) {
    const m = /^segment-(\d+)\.jsonl$/.exec(head.segment);
    if (!m || Number(m[1]) > last) throw tampered(dir, `${HEAD_FILE} names ${head.segment}, which is missing`);
  }
  const bytes = await readFile(join(dir, segmentName(last)));
  return planResume(dir, { segment: last, bytes, prior, seal, head });
}
