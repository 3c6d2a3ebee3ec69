// fsync 'interval': an append resolves once its bytes are written, before any fdatasync, and a
// background fdatasync follows within syncIntervalMs even when no further record arrives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../controller/src/audit/writer.ts';
import { loadOrCreateAuditSigner } from '../../controller/src/audit/signer.ts';
import { nodeAuditFs, type AuditFs } from '../../controller/src/audit/files.ts';
import { startRecord } from '../../controller/src/audit/record.ts';
import { silentLogger } from '../../controller/src/log.ts';

test('interval mode answers after the write and syncs in the background within the interval', async () => {
  const data = await mkdtemp(join(tmpdir(), 'mandate-interval-'));
  try {
    const dir = join(data, 'audit');
    const events: string[] = [];
    let synced!: () => void;
    // Test seam: record the order of segment writes and syncs.
    const fs: AuditFs = {
      async open(path, flags, mode) {
        const fh = await nodeAuditFs.open(path, flags, mode);
        if (!path.endsWith('.jsonl')) return fh;
        return {
          ...fh,
          write: (d) => (events.push('write'), fh.write(d)),
          datasync: async () => {
            await fh.datasync();
            events.push('sync');
            synced?.();
          },
        };
      },
    };
    const log = await AuditLog.open({ dir, segmentRecords: 1000, fsync: 'interval', syncIntervalMs: 20, signer: await loadOrCreateAuditSigner(data), log: silentLogger, fs });
    events.length = 0; // opening writes a start record and a head
    const afterSync = new Promise<void>((resolve) => (synced = resolve));
    const { seq } = await log.append(startRecord(new Date(), { pid: 1, host: 'test' }, null));
    assert.deepEqual(events, ['write'], 'answered after the write, before any sync');
    assert.match(await readFile(join(dir, 'segment-000001.jsonl'), 'utf8'), new RegExp(`"seq":${seq}`));
    await afterSync;
    assert.deepEqual(events, ['write', 'sync']);
    await log.close();
  } finally {
    await rm(data, { recursive: true, force: true });
  }
});
