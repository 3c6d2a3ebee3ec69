import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canonicalJson } from '../../controller/src/audit/canonical.ts';
import { chainRecord, GENESIS_HASH } from '../../controller/src/audit/chain.ts';
import { checkpointText, parseCheckpoint, signCheckpoint, type Checkpoint } from '../../controller/src/audit/checkpoint.ts';
import { buildAuditRecord, type AuditRecord, type AuditRecordBody } from '../../controller/src/audit/record.ts';
import { loadOrCreateAuditSigner, type CheckpointSigner } from '../../controller/src/audit/signer.ts';
import { verifyAuditDir, type VerifyProblemKind, type VerifyReport } from '../../controller/src/audit/verify.ts';
import { AuditLog } from '../../controller/src/audit/writer.ts';
import type { CheckInput, CheckOutcome } from '../../controller/src/authz/types.ts';
import { silentLogger } from '../../controller/src/log.ts';

// Layout of the pristine log: segments of 5 records; 22 decisions between a start and a stop
// record make 24 records: segments 1-4 sealed (1-20), segment 5 open with 21-24, head at 24.
const SEGMENT_RECORDS = 5;
const DECISIONS = 22;

function decision(i: number): AuditRecordBody {
  const input: CheckInput = {
    peer: { spiffeId: 'spiffe://cluster.local/ns/team-a/agent/bot', namespace: 'team-a', name: 'bot', serial: 'ab' },
    request: { id: `r${i}`, method: 'GET', host: 'api.example.com', path: `/items/${i}`, query: {}, headers: {}, scheme: 'https', bodyTruncated: false },
    now: new Date(Date.UTC(2025, 0, 1, 0, 0, i)),
  };
  const outcome: CheckOutcome = {
    decisionId: `decision-${String(i).padStart(4, '0')}`,
    decision: {
      effect: 'Allow', reason: 'rule', rule: { policy: 'team-a/p', generation: 1, rule: 'read' }, message: '', httpStatus: 200, dryRun: [],
      classified: { tool: 'team-a/api', action: 'items.get', classification: 'internal', reversible: true, params: { id: i } },
    },
    removeHeaders: [],
  };
  return buildAuditRecord(input, outcome, { latencyMs: 0.5 });
}

let root: string;
let pristine: string;
let signer: CheckpointSigner;
let other: CheckpointSigner;
let copies = 0;

async function copy(): Promise<string> {
  const dir = join(root, `copy-${++copies}`);
  await cp(pristine, dir, { recursive: true });
  return dir;
}

const seg = (n: number): string => join(`segment-${String(n).padStart(6, '0')}.jsonl`);

async function lines(dir: string, n: number): Promise<string[]> {
  return (await readFile(join(dir, seg(n)), 'utf8')).split('\n').slice(0, -1);
}

async function writeLines(dir: string, n: number, ls: readonly string[]): Promise<void> {
  await writeFile(join(dir, seg(n)), ls.map((l) => l + '\n').join(''));
}

function assertProblem(report: VerifyReport, kind: VerifyProblemKind, segment: string, line?: number, seq?: number): void {
  assert.equal(report.ok, false, 'verification should fail');
  const p = report.problem!;
  assert.deepEqual({ kind: p.kind, segment: p.segment, line: p.line, seq: p.seq }, { kind, segment, line, seq }, p.message);
}

describe('audit verify', () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mandate-audit-verify-'));
    signer = await loadOrCreateAuditSigner(join(root, 'data'));
    other = await loadOrCreateAuditSigner(join(root, 'other'));
    pristine = join(root, 'pristine');
    const log = await AuditLog.open({ dir: pristine, segmentRecords: SEGMENT_RECORDS, fsync: 'batch', signer, log: silentLogger });
    for (let i = 1; i <= DECISIONS; i++) await log.append(decision(i));
    await log.close();
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a chain across several sealed segments and an open one verifies', async () => {
    const names = await readdir(pristine);
    for (let n = 1; n <= 4; n++) assert.ok(names.includes(`segment-00000${n}.seal.json`), `seal ${n}`);
    assert.ok(!names.includes('segment-000005.seal.json'));
    const report = await verifyAuditDir(pristine);
    assert.equal(report.ok, true, report.message);
    assert.deepEqual([report.records, report.segments, report.lastSeq], [DECISIONS + 2, 5, DECISIONS + 2]);
    assert.equal(report.keySource, 'folder');
    assert.deepEqual(report.keyIds, [signer.keyId]);
    assert.match(report.message, new RegExp(`folder's own key ${signer.keyId}.*pin the key`));
    const head = parseCheckpoint(await readFile(join(pristine, 'head.json'), 'utf8'));
    assert.deepEqual([head?.type, head?.segment, head?.count, head?.lastSeq], ['head', seg(5), 4, 24]);
  });

  it('verifies with the pinned key and says so', async () => {
    const report = await verifyAuditDir(pristine, { publicKeyPem: signer.publicKeyPem });
    assert.equal(report.ok, true, report.message);
    assert.equal(report.keySource, 'pinned');
    assert.match(report.message, new RegExp(`pinned key ${signer.keyId}`));
  });

  it('stores each record as the canonical JSON of { seq, prev, ...body, hash }, chained from genesis', async () => {
    const first = JSON.parse((await lines(pristine, 1))[0]!) as AuditRecord;
    assert.equal(first.seq, 1);
    assert.equal(first.prev, GENESIS_HASH);
    assert.equal(first.kind, 'start');
    const { seq: _s, prev: _p, hash: _h, ...body } = first;
    assert.equal(chainRecord(1, GENESIS_HASH, body as AuditRecordBody).line, canonicalJson(first) + '\n');
    const sixth = JSON.parse((await lines(pristine, 2))[0]!) as AuditRecord;
    const fifth = JSON.parse((await lines(pristine, 1))[4]!) as AuditRecord;
    assert.equal(sixth.seq, 6);
    assert.equal(sixth.prev, fifth.hash);
  });

  it('finds a byte flipped inside a record (edited)', async () => {
    const dir = await copy();
    const ls = await lines(dir, 2);
    ls[2] = ls[2]!.replace('"decisionId":"decision-0007"', '"decisionId":"decision-0017"');
    await writeLines(dir, 2, ls);
    assertProblem(await verifyAuditDir(dir), 'edited', seg(2), 3, 8);
  });

  it('finds a byte change that keeps the value but not the canonical bytes (edited)', async () => {
    const dir = await copy();
    const ls = await lines(dir, 3);
    ls[0] = ls[0]!.replace('"kind":"decision"', '"kind":"d\\u0065cision"');
    await writeLines(dir, 3, ls);
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'edited', seg(3), 1, 11);
    assert.match(report.problem!.message, /canonical/);
  });

  it('finds a line that no longer parses (malformed)', async () => {
    const dir = await copy();
    const ls = await lines(dir, 2);
    ls[1] = ls[1]!.replace('{', '[');
    await writeLines(dir, 2, ls);
    assertProblem(await verifyAuditDir(dir), 'malformed', seg(2), 2, undefined);
  });

  it('finds a deleted line (removed)', async () => {
    const dir = await copy();
    const ls = await lines(dir, 3);
    ls.splice(1, 1);
    await writeLines(dir, 3, ls);
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'removed', seg(3), 2, 13);
    assert.match(report.problem!.message, /record 12 is missing/);
  });

  it('finds two swapped lines (reordered)', async () => {
    const dir = await copy();
    const ls = await lines(dir, 2);
    [ls[1], ls[2]] = [ls[2]!, ls[1]!];
    await writeLines(dir, 2, ls);
    assertProblem(await verifyAuditDir(dir), 'reordered', seg(2), 2, 8);
  });

  it('finds records cut from the end of a sealed segment (truncated)', async () => {
    const dir = await copy();
    await writeLines(dir, 2, (await lines(dir, 2)).slice(0, 3));
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'truncated', seg(2), 4, 9);
    assert.match(report.problem!.message, /vouches for 5 records/);
  });

  it('finds records cut from the open segment behind the head checkpoint (truncated)', async () => {
    const dir = await copy();
    await writeLines(dir, 5, (await lines(dir, 5)).slice(0, 2));
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'truncated', seg(5), 3, 23);
    assert.match(report.problem!.message, /head\.json vouches for 4 records/);
    assert.equal(report.records, 22);
  });

  it('finds a deleted middle segment (missing-segment)', async () => {
    const dir = await copy();
    await unlink(join(dir, seg(3)));
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'missing-segment', seg(3), undefined, 11);
    assert.equal(report.records, 10);
  });

  it('finds a deleted seal of a middle segment', async () => {
    const dir = await copy();
    await unlink(join(dir, 'segment-000002.seal.json'));
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'missing-segment', seg(2));
    assert.equal(report.problem!.file, 'segment-000002.seal.json');
  });

  it('finds a deleted head checkpoint', async () => {
    const dir = await copy();
    await unlink(join(dir, 'head.json'));
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'truncated', seg(5));
    assert.equal(report.problem!.file, 'head.json');
  });

  it('finds a deleted open segment that the head vouches for', async () => {
    const dir = await copy();
    await unlink(join(dir, seg(5)));
    assertProblem(await verifyAuditDir(dir), 'missing-segment', seg(5), undefined, 21);
  });

  it('finds an edited seal (bad-signature), whatever field changed', async () => {
    for (const edit of [
      (c: Record<string, unknown>) => (c.count = 4),
      (c: Record<string, unknown>) => (c.lastHash = GENESIS_HASH),
      (c: Record<string, unknown>) => (c.sealedAt = '2030-01-01T00:00:00.000Z'),
    ]) {
      const dir = await copy();
      const file = join(dir, 'segment-000002.seal.json');
      const seal = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      edit(seal);
      await writeFile(file, canonicalJson(seal) + '\n');
      const report = await verifyAuditDir(dir);
      assertProblem(report, 'bad-signature', seg(2));
      assert.equal(report.problem!.file, 'segment-000002.seal.json');
      assert.match(report.problem!.message, new RegExp(`does not verify with key ${signer.keyId}`));
    }
  });

  it('finds a valid seal copied over another segment’s seal', async () => {
    const dir = await copy();
    await cp(join(dir, 'segment-000001.seal.json'), join(dir, 'segment-000002.seal.json'));
    const report = await verifyAuditDir(dir);
    assertProblem(report, 'bad-signature', seg(2));
    assert.match(report.problem!.message, /checkpoint of segment-000001\.jsonl, not of segment-000002\.jsonl/);
  });

  it('refuses checkpoints when verifying against another key (bad-signature)', async () => {
    const report = await verifyAuditDir(pristine, { publicKeyPem: other.publicKeyPem });
    assertProblem(report, 'bad-signature', seg(1));
    assert.match(report.problem!.message, new RegExp(`signed by key ${signer.keyId}, which is not among the trusted keys \\(${other.keyId}\\)`));
  });

  it('a rewrite of the whole folder passes with the folder key but not with the pinned key', async () => {
    const dir = await copy();
    // The attacker edits record 3 and re-chains, re-seals and re-signs everything with their own key.
    let prev = GENESIS_HASH;
    let seq = 0;
    for (let n = 1; n <= 5; n++) {
      const out: string[] = [];
      for (const line of await lines(dir, n)) {
        const { seq: _s, prev: _p, hash: _h, ...body } = JSON.parse(line) as AuditRecord;
        if (_s === 3) (body as Record<string, unknown>).decisionId = 'forged';
        const chained = chainRecord(++seq, prev, body);
        prev = chained.hash;
        out.push(chained.line.slice(0, -1));
      }
      await writeLines(dir, n, out);
      const file = n < 5 ? `segment-00000${n}.seal.json` : 'head.json';
      const old = parseCheckpoint(await readFile(join(dir, file), 'utf8')) as Checkpoint;
      const { keyId: _k, signature: _sig, ...fields } = { ...old, lastHash: prev };
      await writeFile(join(dir, file), checkpointText(await signCheckpoint(fields, other)));
    }
    await writeFile(join(dir, 'audit-signing.pub.pem'), other.publicKeyPem);
    assert.equal((await verifyAuditDir(dir)).ok, true, 'the folder key cannot tell');
    assertProblem(await verifyAuditDir(dir, { publicKeyPem: signer.publicKeyPem }), 'bad-signature', seg(1));
  });

  it('reports a torn last line of the open segment as a warning, not tampering', async () => {
    const dir = await copy();
    await writeFile(join(dir, seg(5)), (await readFile(join(dir, seg(5)), 'utf8')) + '{"seq":25,"pre');
    const report = await verifyAuditDir(dir);
    assert.equal(report.ok, true, report.message);
    assert.equal(report.warnings.length, 1);
    assert.match(report.warnings[0]!, /torn write/);
  });

  it('treats a cut line inside a sealed segment as malformed', async () => {
    const dir = await copy();
    const ls = await lines(dir, 1);
    await writeFile(join(dir, seg(1)), ls.map((l) => l + '\n').join('') + '{"seq":6');
    assertProblem(await verifyAuditDir(dir), 'malformed', seg(1), 6, undefined);
  });

  it('reports a missing folder', async () => {
    const report = await verifyAuditDir(join(root, 'nope'));
    assert.equal(report.ok, false);
    assert.equal(report.problem?.kind, 'missing-segment');
  });

  it('an empty folder is an empty, valid log', async () => {
    const dir = join(root, 'empty');
    await cp(join(pristine, 'audit-signing.pub.pem'), join(dir, 'audit-signing.pub.pem'), { recursive: true });
    const report = await verifyAuditDir(dir);
    assert.deepEqual([report.ok, report.records, report.segments], [true, 0, 0]);
  });
});
