import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../controller/src/audit/writer.ts';
import { AuditSupervisor } from '../../controller/src/audit/supervisor.ts';
import { loadOrCreateAuditSigner } from '../../controller/src/audit/signer.ts';
import { verifyAuditDir } from '../../controller/src/audit/verify.ts';
import { nodeAuditFs, type AuditFs } from '../../controller/src/audit/files.ts';
import { startRecord } from '../../controller/src/audit/record.ts';
import { silentLogger } from '../../controller/src/log.ts';

test('after a write failure the supervisor reopens the log, appends fail closed meanwhile, and the chain verifies', async () => {
  const data = await mkdtemp(join(tmpdir(), 'mandate-sup-'));
  try {
    const dir = join(data, 'audit');
    const signer = await loadOrCreateAuditSigner(data);
    let breakWrites = false;
    // Test seam: the segment writes of the first log fail once `breakWrites` is set.
    const flaky: AuditFs = {
      async open(path, flags, mode) {
        const fh = await nodeAuditFs.open(path, flags, mode);
        return { ...fh, write: (d) => (breakWrites ? Promise.reject(new Error('EIO: injected')) : fh.write(d)) };
      },
    };
    let opens = 0;
    let reopened = 0;
    const sup = await AuditSupervisor.start({
      open: () => AuditLog.open({ dir, segmentRecords: 100, fsync: 'batch', signer, log: silentLogger, ...(opens++ === 0 ? { fs: flaky } : {}) }),
      log: silentLogger,
      minBackoffMs: 1,
      onReopen: () => reopened++,
    });
    const body = () => startRecord(new Date(), { pid: 1, host: 'test' }, null);
    await sup.append(body());
    breakWrites = true;
    await assert.rejects(sup.append(body()), (e: { code?: string }) => e.code === 'AUDIT_WRITE');
    assert.equal(sup.healthy, false);
    await sup.settled();
    assert.equal(reopened, 1);
    assert.equal(sup.healthy, true);
    await sup.append(body());
    await sup.close();
    const report = await verifyAuditDir(dir);
    assert.equal(report.ok, true, JSON.stringify(report.problem));
  } finally {
    await rm(data, { recursive: true, force: true });
  }
});
