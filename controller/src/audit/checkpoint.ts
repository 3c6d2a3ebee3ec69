// Signed checkpoints. A seal vouches for a whole, closed segment; the head vouches for a prefix
// of the open segment. Both say: this segment holds `count` records, firstSeq..lastSeq, and the
// last of them has hash lastHash. The signature covers the canonical JSON of every other member,
// including `type`, so a head can never be passed off as a seal or the other way round.
import type { KeyObject } from 'node:crypto';
import { canonicalBytes, canonicalJson } from './canonical.ts';
import { isHash } from './chain.ts';
import type { CheckpointSigner } from './signer.ts';
import { verifyAuditSignature } from './signer.ts';

interface CheckpointBase {
  /** File name of the segment, e.g. `segment-000001.jsonl`. */
  readonly segment: string;
  /** Seq of the segment's first record (lastSeq + 1 when count is 0). */
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly count: number;
  /** Hash of record lastSeq (the previous segment's last hash, or GENESIS, when count is 0). */
  readonly lastHash: string;
  readonly keyId: string;
  /** base64url ECDSA P-256 signature over the canonical JSON of the other members. */
  readonly signature: string;
}

export interface SealCheckpoint extends CheckpointBase {
  readonly type: 'seal';
  readonly sealedAt: string;
}

export interface HeadCheckpoint extends CheckpointBase {
  readonly type: 'head';
  readonly writtenAt: string;
}

export type Checkpoint = SealCheckpoint | HeadCheckpoint;
type Unsigned<T> = T extends Checkpoint ? Omit<T, 'keyId' | 'signature'> : never;
export type UnsignedCheckpoint = Unsigned<Checkpoint>;

export function signingBytes(checkpoint: Omit<Checkpoint, 'signature'>): Buffer {
  const { signature: _ignored, ...rest } = checkpoint as Checkpoint;
  return canonicalBytes(rest);
}

export async function signCheckpoint<T extends UnsignedCheckpoint>(fields: T, signer: CheckpointSigner): Promise<T & { keyId: string; signature: string }> {
  const withKey = { ...fields, keyId: signer.keyId };
  const signature = await signer.sign(signingBytes(withKey));
  return { ...withKey, signature };
}

/** The file content: canonical JSON and a newline. */
export function checkpointText(checkpoint: Checkpoint): string {
  return canonicalJson(checkpoint) + '\n';
}

const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Parses a checkpoint file's content; null when it is not a well-formed checkpoint. */
export function parseCheckpoint(text: string): Checkpoint | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const c = v as Record<string, unknown>;
  const timeOk = c.type === 'seal' ? typeof c.sealedAt === 'string' : c.type === 'head' ? typeof c.writtenAt === 'string' : false;
  if (!timeOk || typeof c.segment !== 'string' || typeof c.keyId !== 'string' || typeof c.signature !== 'string') return null;
  if (!count(c.firstSeq) || !count(c.lastSeq) || !count(c.count) || !isHash(c.lastHash)) return null;
  return c as unknown as Checkpoint;
}

export type SignatureCheck = { readonly ok: true; readonly keyId: string } | { readonly ok: false; readonly message: string };

/** Checks the signature with the key named by keyId among the trusted keys. */
export function checkCheckpointSignature(checkpoint: Checkpoint, keys: ReadonlyMap<string, KeyObject>): SignatureCheck {
  const key = keys.get(checkpoint.keyId);
  if (!key) return { ok: false, message: `signed by key ${checkpoint.keyId}, which is not among the trusted keys (${[...keys.keys()].join(', ') || 'none'})` };
  if (!verifyAuditSignature(key, signingBytes(checkpoint), checkpoint.signature)) return { ok: false, message: `signature does not verify with key ${checkpoint.keyId}` };
  return { ok: true, keyId: checkpoint.keyId };
}
