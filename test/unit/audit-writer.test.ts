import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCheckpoint } from '../../controller/src/audit/checkpoint.ts';
import { nodeAuditFs, type AuditFs } from '../../controller/src/audit/files.ts';
import { buildAuditRecord, type AuditRecord, type AuditRecordBody, type DecisionRecordBody, type RecoveryRecordBody, type StartRecordBody } from '../../controller/src/audit/record.ts';
import { loadOrCreateAuditSigner, verifyAuditSignature, importAuditPublicKey, type CheckpointSigner } from '../../controller/src/audit/signer.ts';
import { verifyAuditDir } from '../../controller/src/audit/verify.ts';
import { AuditLog, type AuditLogOptions } from '../../controller/src/audit/writer.ts';
import type { CheckInput, CheckOutcome } from '../../controller/src/authz/types.ts';
import type { FsyncMode } from '../../controller/src/config.ts';
import { isMandateError } from '../../controller/src/errors.ts';
import { createLogger, silentLogger } from '../../controller/src/log.ts';

function decision(id: string): DecisionRecordBody {
  const input: CheckInput = {
    peer: { spiffeId: 'spiffe://cluster.local/ns/team-a/agent/bot', namespace: 'team-a', name: 'bot', serial: 'ab' },
    request: { id, method: 'GET', host: 'api.example.com', path: '/items', query: {}, headers: {}, scheme: 'https', bodyTruncated: false },
    now: new Date('2025-01-01T00:00:00Z'),
  };
  const outcome: CheckOutcome = {
    decisionId: id,
    decision: { effect: 'Deny', reason: 'default-deny', message: '', httpStatus: 403, dryRun: [] },
    removeHeaders: [],
  };
  return buildAuditRecord(input, outcome, { latencyMs: 0.25 });
}

let root: string;
let signer: CheckpointSigner;
let dirs = 0;
const freshDir = (): string => join(root, `log-${++dirs}`);

function open(dir: string, over: Partial<AuditLogOptions> = {}): Promise<AuditLog> {
  return AuditLog.open({ dir, segmentRecords: 1000, fsync: 'batch', signer, log: silentLogger, ...over });
}

async function records(dir: string): Promise<AuditRecord[]> {
  const names = (await readdir(dir)).filter((n) => /^segment-\d+\.jsonl$/.test(n)).sort();
  const out: AuditRecord[] = [];
  for (const name of names) {
    for (const line of (await readFile(join(dir, name), 'utf8')).split('\n')) if (line) out.push(JSON.parse(line) as AuditRecord);
  }
  return out;
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const auditWrite = (pattern?: RegExp) => (err: unknown): boolean => isMandateError(err, 'AUDIT_WRITE') && (!pattern || pattern.test(err.message));
const tampered = (pattern: RegExp) => (err: unknown): boolean => isMandateError(err, 'AUDIT_TAMPERED') && pattern.test(err.message);

/** Test seam: a file system whose segment writes and syncs fail on demand. */
function faultyFs() {
  const faults = { write: null as null | 'error' | 'partial', datasync: false, open: null as RegExp | null, partialBytes: 0 };
  const injected = (code: string) => Object.assign(new Error(`${code}: injected by test`), { code });
  const fs: AuditFs = {
    async open(path, flags, mode) {
      if (faults.open?.test(path)) throw injected('EIO');
      const fh = await nodeAuditFs.open(path, flags, mode);
      if (!/segment-\d+\.jsonl$/.test(path)) return fh;
      return {
        ...fh,
        async write(data) {
          if (faults.write === 'error') throw injected('ENOSPC');
          if (faults.write === 'partial') {
            const half = data.subarray(0, Math.floor(data.length / 2));
            await fh.write(half);
            faults.partialBytes = half.length;
            throw injected('ENOSPC');
          }
          return fh.write(data);
        },
        async datasync() {
          if (faults.datasync) throw injected('EIO');
          return fh.datasync();
        },
      };
    },
  };
  return { fs, faults };
}

describe('audit writer', () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mandate-audit-writer-'));
    signer = await loadOrCreateAuditSigner(join(root, 'data'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('starts a new log with a start record, the public key and a signed head', async () => {
    const dir = freshDir();
    const log = await open(dir);
    const [start] = await records(dir);
    assert.equal(start?.kind, 'start');
    assert.equal(start?.seq, 1);
    assert.equal((start as StartRecordBody).resumed, null);
    assert.equal(await readFile(join(dir, 'audit-signing.pub.pem'), 'utf8'), signer.publicKeyPem);
    const head = parseCheckpoint(await readFile(join(dir, 'head.json'), 'utf8'));
    assert.deepEqual([head?.lastSeq, head?.lastHash, head?.keyId], [1, start?.hash, signer.keyId]);
    assert.deepEqual(log.stats(), { records: 1, bytes: log.stats().bytes, segments: 1, lastSeq: 1, batches: 1, syncs: log.stats().syncs, checkpoints: 2, failed: false });
    await log.close();
  });

  for (const fsync of ['batch', 'never', 'always'] as FsyncMode[]) {
    it(`1,000 concurrent appends keep call order and a valid chain (fsync ${fsync})`, async () => {
      const dir = freshDir();
      const log = await open(dir, { fsync, segmentRecords: 10_000 });
      const before = log.stats();
      // One burst in one turn: group commit must make it a single write (one sync in batch mode).
      const burst = await Promise.all(Array.from({ length: 1000 }, (_, i) => log.append(decision(`burst-${i}`))));
      burst.forEach((r, i) => assert.equal(r.seq, before.lastSeq + 1 + i));
      const afterBurst = log.stats();
      assert.equal(afterBurst.batches - before.batches, fsync === 'always' ? 1000 : 1);
      assert.equal(afterBurst.syncs - before.syncs, fsync === 'always' ? 1000 : fsync === 'batch' ? 1 : 0);
      // 1,000 appenders with several appends each, interleaving: seq must follow the order of the calls.
      const each = fsync === 'always' ? 1 : 3;
      let calls = 0;
      const results = new Map<string, number>();
      await Promise.all(Array.from({ length: 1000 }, async (_, w) => {
        for (let k = 0; k < each; k++) {
          const id = `call-${calls++}-w${w}`;
          results.set(id, (await log.append(decision(id))).seq);
        }
      }));
      await log.close();
      const stored = await records(dir);
      const bySeq = new Map(stored.map((r) => [r.seq, r]));
      for (const [id, seq] of results) {
        assert.equal(seq, afterBurst.lastSeq + 1 + Number(/^call-(\d+)/.exec(id)![1]));
        assert.equal((bySeq.get(seq) as { decisionId?: string }).decisionId, id);
      }
      assert.deepEqual(stored.map((r) => r.seq), stored.map((_, i) => i + 1));
      const report = await verifyAuditDir(dir);
      assert.equal(report.ok, true, report.message);
      assert.equal(report.records, 1 + 1000 + 1000 * each + 1);
    });
  }

  it('seals full segments and continues seq and chain across them', async () => {
    const dir = freshDir();
    const log = await open(dir, { segmentRecords: 4 });
    await Promise.all(Array.from({ length: 9 }, (_, i) => log.append(decision(`d${i}`))));
    assert.equal(log.stats().segments, 3);
    await log.close();
    const seal = parseCheckpoint(await readFile(join(dir, 'segment-000002.seal.json'), 'utf8'));
    assert.deepEqual([seal?.type, seal?.firstSeq, seal?.lastSeq, seal?.count], ['seal', 5, 8, 4]);
    const stored = await records(dir);
    assert.equal(seal?.lastHash, stored[7]?.hash);
    assert.equal(stored[8]?.prev, stored[7]?.hash);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('writes each line to stdout only after the file holds it, byte for byte', async () => {
    const dir = freshDir();
    const seen: string[] = [];
    const log = await open(dir, {
      stdout: (line) => {
        assert.ok(readFileSync(join(dir, 'segment-000001.jsonl'), 'utf8').includes(line + '\n'), 'stdout before the file write');
        seen.push(line);
      },
    });
    await Promise.all([log.append(decision('a')), log.append(decision('b'))]);
    await log.close();
    const fileLines = (await readFile(join(dir, 'segment-000001.jsonl'), 'utf8')).split('\n').filter(Boolean);
    assert.deepEqual(seen, fileLines);
  });

  it('keeps writing when the stdout sink throws', async () => {
    const dir = freshDir();
    const logged: string[] = [];
    const log = await open(dir, { stdout: () => { throw new Error('EPIPE'); }, log: createLogger({ write: (l) => logged.push(l) }) });
    assert.equal((await log.append(decision('x'))).seq, 2);
    await log.close();
    assert.equal(logged.filter((l) => l.includes('stdout sink failed')).length, 1);
  });

  it('resumes after a clean close: stop, then start with where it resumed', async () => {
    const dir = freshDir();
    let log = await open(dir);
    await log.append(decision('one'));
    await log.close();
    log = await open(dir);
    assert.equal((await log.append(decision('two'))).seq, 5);
    await log.close();
    const stored = await records(dir);
    assert.deepEqual(stored.map((r) => r.kind), ['start', 'decision', 'stop', 'start', 'decision', 'stop']);
    assert.deepEqual((stored[3] as StartRecordBody).resumed, { segment: 'segment-000001.jsonl', lastSeq: 3 });
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('cuts a torn last line on open and records the recovery', async () => {
    const dir = freshDir();
    const log = await open(dir);
    await log.append(decision('kept'));
    await log.close();
    const torn = '{"seq":4,"prev":"0123';
    await appendFile(join(dir, 'segment-000001.jsonl'), torn);
    const reopened = await open(dir);
    await reopened.close();
    const stored = await records(dir);
    const recovery = stored[3] as unknown as RecoveryRecordBody & AuditRecord;
    assert.equal(recovery.kind, 'recovery');
    assert.deepEqual([recovery.segment, recovery.droppedBytes, recovery.droppedLines, recovery.lastSeq], ['segment-000001.jsonl', torn.length, 1, 3]);
    assert.equal(recovery.seq, 4);
    assert.equal((await readFile(join(dir, 'segment-000001.jsonl'), 'utf8')).includes('0123'), false);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('cuts zero-filled blocks a crash left behind the last record', async () => {
    const dir = freshDir();
    await (await open(dir)).close();
    await appendFile(join(dir, 'segment-000001.jsonl'), Buffer.from([0, 0, 0, 0, 0x0a, 0, 0]));
    await (await open(dir)).close();
    const recovery = (await records(dir))[2] as unknown as RecoveryRecordBody;
    assert.deepEqual([recovery.kind, recovery.droppedBytes, recovery.droppedLines], ['recovery', 7, 2]);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('refuses to resume when a whole record follows the garbage (not a torn write)', async () => {
    const dir = freshDir();
    await (await open(dir)).close();
    const file = join(dir, 'segment-000001.jsonl');
    const [first] = (await readFile(file, 'utf8')).split('\n');
    await appendFile(file, `garbage\n${first}\n`);
    await assert.rejects(open(dir), tampered(/segment-000001\.jsonl line 3/));
  });

  it('refuses to resume over records cut behind the head, leaving head.json as evidence', async () => {
    const dir = freshDir();
    const log = await open(dir);
    for (let i = 0; i < 5; i++) await log.append(decision(`d${i}`));
    await log.close();
    const file = join(dir, 'segment-000001.jsonl');
    await writeFile(file, (await readFile(file, 'utf8')).split('\n').slice(0, 4).join('\n') + '\n');
    const headBefore = await readFile(join(dir, 'head.json'));
    await assert.rejects(open(dir), tampered(/ends at record 4 but head\.json vouches for record 7/));
    assert.deepEqual(await readFile(join(dir, 'head.json')), headBefore);
    assert.equal((await readdir(dir)).includes('writer.lock'), false, 'the lock is released after a refused open');
  });

  it('refuses to resume over an edited record', async () => {
    const dir = freshDir();
    const log = await open(dir);
    await log.append(decision('original'));
    await log.close();
    const file = join(dir, 'segment-000001.jsonl');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"original"', '"0riginal"'));
    await assert.rejects(open(dir), tampered(/line 2: record 2 does not match its hash/));
  });

  it('seals at open when segmentRecords was lowered', async () => {
    const dir = freshDir();
    const log = await open(dir, { segmentRecords: 20 });
    for (let i = 0; i < 6; i++) await log.append(decision(`d${i}`));
    await log.close();
    const again = await open(dir, { segmentRecords: 3 });
    assert.equal((await again.append(decision('next'))).seq, 10);
    await again.close();
    const seal = parseCheckpoint(await readFile(join(dir, 'segment-000001.seal.json'), 'utf8'));
    assert.equal(seal?.count, 8);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('fails closed after a write error until reopened', async () => {
    const dir = freshDir();
    const { fs, faults } = faultyFs();
    const logged: string[] = [];
    const log = await open(dir, { fs, log: createLogger({ write: (l) => logged.push(l) }) });
    for (let i = 0; i < 3; i++) await log.append(decision(`ok-${i}`));
    faults.write = 'error';
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => log.append(decision(`lost-${i}`))));
    for (const r of results) assert.ok(r.status === 'rejected' && auditWrite(/refused until the log is reopened/)(r.reason));
    faults.write = null;
    // The file works again, but the writer must not trust its position in the chain.
    await assert.rejects(log.append(decision('after')), auditWrite());
    await assert.rejects(log.checkpoint(), auditWrite());
    assert.equal(log.stats().failed, true);
    assert.ok(logged.some((l) => l.includes('audit log failed closed') && l.includes('ENOSPC')));
    await log.close();
    const reopened = await open(dir);
    assert.equal((await reopened.append(decision('after-reopen'))).seq, 6);
    await reopened.close();
    const ids = (await records(dir)).map((r) => (r as { decisionId?: string }).decisionId ?? r.kind);
    assert.deepEqual(ids, ['start', 'ok-0', 'ok-1', 'ok-2', 'start', 'after-reopen', 'stop']);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('a write cut short by an error leaves a torn line the next open removes', async () => {
    const dir = freshDir();
    const { fs, faults } = faultyFs();
    const log = await open(dir, { fs });
    faults.write = 'partial';
    await assert.rejects(log.append(decision('half')), auditWrite());
    await log.close();
    const reopened = await open(dir);
    await reopened.close();
    const recovery = (await records(dir)).find((r) => r.kind === 'recovery') as unknown as RecoveryRecordBody;
    assert.ok(faults.partialBytes > 0);
    assert.equal(recovery.droppedBytes, faults.partialBytes);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('fails closed when fdatasync fails; the unacknowledged record may survive a reopen', async () => {
    const dir = freshDir();
    const { fs, faults } = faultyFs();
    const log = await open(dir, { fs });
    faults.datasync = true;
    await assert.rejects(log.append(decision('unsynced')), auditWrite());
    await log.close();
    await (await open(dir)).close();
    assert.ok((await records(dir)).some((r) => (r as { decisionId?: string }).decisionId === 'unsynced'));
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('fails closed when a seal cannot be written, and seals at the next open', async () => {
    const dir = freshDir();
    const { fs, faults } = faultyFs();
    const log = await open(dir, { fs, segmentRecords: 3 });
    faults.open = /seal\.json\..*\.tmp$/;
    // Both records are written and synced before the seal is attempted: they are acknowledged.
    assert.deepEqual((await Promise.all([log.append(decision('a')), log.append(decision('b'))])).map((r) => r.seq), [2, 3]);
    await until(() => log.stats().failed, 'the failed seal');
    await assert.rejects(log.append(decision('c')), auditWrite());
    await log.close();
    await (await open(dir, { segmentRecords: 3 })).close();
    assert.ok((await readdir(dir)).includes('segment-000001.seal.json'));
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('rejects a body that is not JSON data without touching the chain', async () => {
    const dir = freshDir();
    const log = await open(dir);
    await assert.rejects(log.append({ ...decision('x'), latencyMs: NaN }), (err: unknown) => isMandateError(err, 'INTERNAL'));
    await assert.rejects(log.append({ ...decision('x'), seq: 9 } as unknown as AuditRecordBody), (err: unknown) => isMandateError(err, 'INTERNAL') && /"seq"/.test(err.message));
    assert.equal((await log.append(decision('y'))).seq, 2);
    assert.equal(log.stats().failed, false);
    await log.close();
    await assert.rejects(log.append(decision('z')), auditWrite(/closed/));
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('checkpoint() writes a head covering every record appended before it', async () => {
    const dir = freshDir();
    const log = await open(dir);
    const appended = [log.append(decision('a')), log.append(decision('b'))];
    await log.checkpoint();
    const head = parseCheckpoint(await readFile(join(dir, 'head.json'), 'utf8'));
    assert.equal(head?.lastSeq, 3);
    assert.equal(head?.lastHash, (await appended[1])!.hash);
    await log.close();
  });

  it('rewrites the head every N records, after M ms of quiet, and when the clock says so', async () => {
    const dir = freshDir();
    let clock = Date.parse('2025-01-01T00:00:00Z');
    const log = await open(dir, { headEvery: { records: 4, ms: 60_000 }, now: () => new Date(clock) });
    const base = log.stats().checkpoints;
    await Promise.all([1, 2, 3, 4].map((i) => log.append(decision(`n${i}`))));
    await until(() => log.stats().checkpoints === base + 1, 'the head after 4 records');
    clock += 61_000;
    await log.append(decision('late'));
    await until(() => log.stats().checkpoints === base + 2, 'the head after 60 s by the clock');
    assert.equal(parseCheckpoint(await readFile(join(dir, 'head.json'), 'utf8'))?.lastSeq, 6);
    await log.close();

    const quiet = await open(freshDir(), { headEvery: { records: 1000, ms: 25 } });
    const before = quiet.stats().checkpoints;
    await quiet.append(decision('lonely'));
    await until(() => quiet.stats().checkpoints === before + 1, 'the head timer');
    await quiet.close();
  });

  describe('writer lock', () => {
    const lockFile = (dir: string) => join(dir, 'writer.lock');
    const writeLock = async (dir: string, pid: number, host: string) => {
      await mkdir(dir, { recursive: true });
      await writeFile(lockFile(dir), JSON.stringify({ pid, host, token: 'someone-else', since: new Date().toISOString() }));
    };

    it('refuses a second writer in the same process and frees the folder on close', async () => {
      const dir = freshDir();
      const log = await open(dir);
      await assert.rejects(open(dir), auditWrite(/already open for writing in this process/));
      await log.close();
      assert.equal((await readdir(dir)).includes('writer.lock'), false);
      await (await open(dir)).close();
    });

    it('refuses when a live process on this host holds the lock', async () => {
      const dir = freshDir();
      await writeLock(dir, process.ppid, hostname());
      await assert.rejects(open(dir), auditWrite(new RegExp(`locked by a live writer \\(pid ${process.ppid} on host`)));
      assert.equal((JSON.parse(await readFile(lockFile(dir), 'utf8')) as { token: string }).token, 'someone-else');
    });

    it('takes over the lock of a process that has exited', async () => {
      const dir = freshDir();
      const child = spawn(process.execPath, ['-e', '']);
      await once(child, 'exit');
      await writeLock(dir, child.pid!, hostname());
      await (await open(dir)).close();
    });

    it('takes over a lock left by an earlier incarnation with this same pid', async () => {
      const dir = freshDir();
      await writeLock(dir, process.pid, hostname());
      await (await open(dir)).close();
    });

    it('honours a fresh lock from another host and takes over a stale one', async () => {
      const dir = freshDir();
      await writeLock(dir, 1, 'other-host.example');
      await assert.rejects(open(dir), auditWrite(/pid 1 on host other-host\.example/));
      const old = new Date(Date.now() - 3_600_000);
      await utimes(lockFile(dir), old, old);
      await (await open(dir)).close();
    });
  });

  describe('checkpoint signing key', () => {
    it('creates a P-256 key with mode 0600 once and loads it afterwards', async () => {
      const dataDir = join(root, 'key-data');
      const [a, b] = await Promise.all([loadOrCreateAuditSigner(dataDir), loadOrCreateAuditSigner(dataDir)]);
      assert.equal(a.keyId, b.keyId, 'concurrent creation agrees on one key');
      const c = await loadOrCreateAuditSigner(dataDir);
      assert.equal(c.keyId, a.keyId);
      assert.equal((await stat(join(dataDir, 'keys', 'audit-signing.key'))).mode & 0o777, 0o600);
      assert.equal((await stat(join(dataDir, 'keys'))).mode & 0o777, 0o700);
      assert.match(a.keyId, /^[0-9a-f]{16}$/);
      assert.match(a.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
      const sig = await a.sign(Buffer.from('checkpoint'));
      assert.match(sig, /^[A-Za-z0-9_-]{86}$/);
      const { key, keyId } = importAuditPublicKey(a.publicKeyPem);
      assert.equal(keyId, a.keyId);
      assert.equal(verifyAuditSignature(key, Buffer.from('checkpoint'), sig), true);
      assert.equal(verifyAuditSignature(key, Buffer.from('checkpoinT'), sig), false);
      assert.equal((await readdir(join(dataDir, 'keys'))).filter((n) => n.endsWith('.tmp')).length, 0);
    });

    it('refuses a key file that is not an ECDSA P-256 key', async () => {
      const dataDir = join(root, 'rsa-data');
      await mkdir(join(dataDir, 'keys'), { recursive: true });
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      await writeFile(join(dataDir, 'keys', 'audit-signing.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      await assert.rejects(loadOrCreateAuditSigner(dataDir), (err: unknown) => isMandateError(err, 'CONFIG_INVALID') && !/PRIVATE KEY/.test(err.message));
    });

    it('keeps the previous public key when the signing key changes, so older seals still verify', async () => {
      const dir = freshDir();
      const next = await loadOrCreateAuditSigner(join(root, 'next-data'));
      let log = await open(dir, { segmentRecords: 3 });
      for (let i = 0; i < 3; i++) await log.append(decision(`old-${i}`));
      await log.close();
      log = await open(dir, { segmentRecords: 3, signer: next });
      for (let i = 0; i < 3; i++) await log.append(decision(`new-${i}`));
      await log.close();
      assert.ok((await readdir(dir)).includes(`audit-signing-${signer.keyId}.pub.pem`));
      assert.equal(await readFile(join(dir, 'audit-signing.pub.pem'), 'utf8'), next.publicKeyPem);
      const report = await verifyAuditDir(dir);
      assert.equal(report.ok, true, report.message);
      assert.deepEqual(new Set(report.keyIds), new Set([signer.keyId, next.keyId]));
      assert.equal((await verifyAuditDir(dir, { publicKeyPem: [signer.publicKeyPem, next.publicKeyPem] })).ok, true);
      const onlyNew = await verifyAuditDir(dir, { publicKeyPem: next.publicKeyPem });
      assert.equal(onlyNew.problem?.kind, 'bad-signature');
      assert.equal(onlyNew.problem?.segment, 'segment-000001.jsonl');
    });
  });
});
