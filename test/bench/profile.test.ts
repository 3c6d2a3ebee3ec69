// The profile summary attributes sample time to the right functions and leaves idle out; the
// quiet-machine check computes idle shares and gives up at its bound.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hotSpotTable, summarizeCpuProfile } from './profile.ts';
import { foreignShare, idleShare, readTicks, waitForQuiet } from './quiet.ts';

describe('summarizeCpuProfile', () => {
  it('sums self time per function and file over busy time only', () => {
    const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });
    const profile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', '') },
        { id: 2, callFrame: frame('(idle)', '') },
        { id: 3, callFrame: frame('decide', 'file:///repo/controller/src/policy/decide.ts', 233) },
        { id: 4, callFrame: frame('getPeerCertificate', 'node:internal/tls/wrap', 1252) },
      ],
      // Each sample's time is the delta that follows it.
      samples: [2, 3, 4, 3, 2],
      timeDeltas: [0, 5000, 3000, 1000, 3000, 10_000],
      startTime: 0,
      endTime: 22_000,
    };
    const s = summarizeCpuProfile(profile, '/repo');
    assert.equal(s.busyMs, 7);
    assert.deepEqual(s.functions.map((f) => [f.name, f.selfMs]), [
      ['decide controller/src/policy/decide.ts:234', 6],
      ['getPeerCertificate node:internal/tls/wrap:1253', 1],
    ]);
    assert.equal(s.functions[0]!.share, 6 / 7);
    assert.deepEqual(s.files.map((f) => f.name), ['controller/src/policy/decide.ts', 'node:internal/tls/wrap']);
    assert.match(hotSpotTable('t', s.functions), /85\.7 %\s+6 ms {2}decide/);
  });
});

describe('quiet machine check', () => {
  it('computes the idle share between two samples', () => {
    assert.equal(idleShare({ idle: 100, total: 200 }, { idle: 190, total: 300 }), 0.9);
    assert.equal(idleShare({ idle: 5, total: 5 }, { idle: 5, total: 5 }), 1);
  });

  it('attributes busy time to other processes only when it is not ours', () => {
    const a = { total: 1000, idle: 400, own: 100 };
    assert.equal(foreignShare(a, { total: 2000, idle: 900, own: 500 }), 0.1);
    assert.equal(foreignShare(a, { total: 2000, idle: 400, own: 1100 }), 0);
    assert.equal(foreignShare(a, a), 0);
  });

  it('reads the CPU time of the machine and of this process from /proc', () => {
    const before = readTicks([]);
    assert.ok(before, 'Linux /proc is readable');
    const until = Date.now() + 100;
    let spin = 0;
    while (Date.now() < until) spin += 1;
    const after = readTicks([]);
    assert.ok(spin > 0 && after && after.total >= before.total && after.own >= before.own);
    assert.equal(readTicks([2 ** 22 + 7]), undefined, 'a process that does not exist');
  });

  it('gives up at its bound when the machine never becomes quiet enough', async () => {
    const started = Date.now();
    // No machine is more than 100 % idle.
    const r = await waitForQuiet({ maxSeconds: 1.5, minIdle: 1.01 });
    assert.equal(r.quiet, false);
    assert.ok(Date.now() - started < 5000);
    assert.ok(r.idle >= 0 && r.idle <= 1);
  });
});
