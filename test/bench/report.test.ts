// The report writer: the latest section per kind, a history of earlier load runs, targets judged
// correctly, and the free-form notes kept across runs.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { LoadResult } from './ghz.ts';
import { updateBenchmarksDoc, verdicts, writeBenchmarksDoc, type LoadReport, type MicroReport } from './report.ts';

const result = (rps: number, p50Ms: number, p99Ms: number, errors = 0): LoadResult => ({
  count: 20000,
  rps,
  averageMs: p50Ms * 1.2,
  p50Ms,
  p90Ms: (p50Ms + p99Ms) / 2,
  p99Ms,
  errors,
  cutInFlight: 0,
  statusCodes: errors > 0 ? { OK: 20000 - errors, Unavailable: errors } : { OK: 20000 },
  endReason: 'normal',
  totalSeconds: 20000 / rps,
});

function report(date: string, mandateRps: number, p99AtRate: number, rateRps = 2000): LoadReport {
  return {
    date,
    machine: { cpuModel: 'Test CPU @ 3.0GHz', cores: 2, memoryGiB: 23.5, os: 'Linux', node: 'v24.21.0', tools: { ghz: 'ghz v0.121.0', go: 'go version go1.26.8 linux/amd64' } },
    revision: 'abc1234',
    settings: { requests: 20000, rateRequests: 20000, rate: 2000, maxSeconds: 30, concurrency: 32, connections: 4, rateConcurrency: 4, rateConnections: 2, ghzCpus: 1, warmupRequests: 3000 },
    scale: { identities: 100, policies: 111, rules: 1000, rulesBoundToLoadIdentity: 82, tools: 12, exampleTools: 0, actions: 43, mix: { read: 40, write: 15 }, expectAllow: 70, expectDeny: 30, mcpRequests: 21 },
    bare: { max: result(10000, 1.1, 4), rate: result(2000, 0.5, 1.2) },
    mandate: { max: result(mandateRps, 2.2, 8), rate: result(rateRps, 0.8, p99AtRate) },
    probe: { sent: 100, allowed: 70, denied: 30, errors: 0, mismatches: 0, examples: [] },
    notes: ['a note from the run'],
  };
}

const dir = await mkdtemp(join(tmpdir(), 'bench-report-test-'));
after(() => rm(dir, { recursive: true, force: true }));

describe('verdicts', () => {
  it('judges the throughput ratio and the p99 at the fixed rate', () => {
    const good = verdicts(report('2026-01-01T10:00:00.000Z', 8500, 1.6));
    assert.equal(good.ratio, 0.85);
    assert.equal(good.ratioMet, true);
    assert.equal(good.p99Met, true);
    const bad = verdicts(report('2026-01-01T10:00:00.000Z', 7000, 2.5));
    assert.equal(bad.ratioMet, false);
    assert.equal(bad.p99Met, false);
  });

  it('does not count a low p99 when the rate was not sustained, or calls failed', () => {
    const slow = verdicts(report('2026-01-01T10:00:00.000Z', 9000, 1.0, 1500));
    assert.equal(slow.rateSustained, false);
    assert.equal(slow.p99Met, false);
    const r = report('2026-01-01T10:00:00.000Z', 9000, 1.0);
    const failing = verdicts({ ...r, mandate: { ...r.mandate, max: result(9000, 1, 2, 5) } });
    assert.equal(failing.ratioMet, false);
  });
});

describe('updateBenchmarksDoc', () => {
  const first = report('2026-01-01T10:00:00.000Z', 8500, 1.6);
  const second = report('2026-02-01T10:00:00.000Z', 7000, 2.5);

  it('renders the load section with the table, the targets and the notes', () => {
    const doc = updateBenchmarksDoc(undefined, { load: first });
    assert.match(doc, /^# Benchmarks/);
    assert.match(doc, /Run \*\*2026-01-01 10:00 UTC\*\*, commit abc1234, on 2 × Test CPU/);
    assert.match(doc, /\| checks\/s \| 10,000 \| 8,500 \| 85\.0 % \|/);
    assert.match(doc, /\| p99 \(ms\) \| 1\.20 \| 1\.60 \|/);
    assert.match(doc, /≥ 80\.0 % of bare throughput \| 85\.0 % \| met \|/);
    assert.match(doc, /p99 ≤ 2 ms at 2,000 checks\/s \| 1\.60 ms \| met \|/);
    assert.match(doc, /- a note from the run/);
    assert.match(doc, /No earlier load runs\./);
    assert.match(doc, /## Notes/);
  });

  it('moves the previous load run into the history and keeps edited notes', () => {
    let doc = updateBenchmarksDoc(undefined, { load: first });
    doc = doc.replace('Free-form observations about the runs above; this section is kept as it is by `npm run bench`.', 'Our own words -- kept.');
    doc = updateBenchmarksDoc(doc, { load: second });
    assert.match(doc, /Run \*\*2026-02-01 10:00 UTC\*\*/);
    assert.doesNotMatch(doc, /Run \*\*2026-01-01/);
    assert.match(doc, /\| 2026-01-01 10:00 UTC \| abc1234 \| 2 × Test CPU @ 3\.0GHz \| 8,500 \| 10,000 \| 85\.0 % \| 1\.60 \| throughput \/ p99 \|/);
    assert.match(doc, /\*\*not met\*\*/);
    assert.match(doc, /Our own words -- kept\./);
    assert.equal(doc.match(/<!-- bench:load:begin -->/g)?.length, 1);

    const third = updateBenchmarksDoc(doc, { load: report('2026-03-01T10:00:00.000Z', 9000, 1.0) });
    const rows = third.match(/^\| 2026-0[12]-01 10:00 UTC \|.*$/gm) ?? [];
    assert.deepEqual(rows.map((r) => r.slice(2, 12)), ['2026-02-01', '2026-01-01'], 'newest first');
  });

  it('replaces micro sections and keeps the others untouched', () => {
    const policy: MicroReport = { date: '2026-01-01T10:00:00.000Z', status: 'ok', body: '```text\ncompile 1000 rules: 12 ms\n```' };
    const cel: MicroReport = { date: '2026-01-01T10:00:00.000Z', status: 'ok', body: '| Expression | cel-js |\n|---|---:|\n| `a > 1` | 50 |' };
    let doc = updateBenchmarksDoc(undefined, { load: first, policy, cel });
    assert.match(doc, /compile 1000 rules: 12 ms/);
    doc = updateBenchmarksDoc(doc, { cel: { ...cel, date: '2026-02-01T10:00:00.000Z', body: 'new cel table' } });
    assert.match(doc, /compile 1000 rules: 12 ms/);
    assert.match(doc, /new cel table/);
    assert.doesNotMatch(doc, /`a > 1`/);
    assert.match(doc, /Run \*\*2026-01-01 10:00 UTC\*\*, commit/, 'the load section stays when only micro benchmarks ran');
    const absent = updateBenchmarksDoc(doc, { policy: { date: '2026-02-01T10:00:00.000Z', status: 'absent', body: 'not there' } });
    assert.match(absent, /## Policy engine.*\n\nRun \*\*2026-02-01 10:00 UTC\*\* \(absent\)\./);
  });

  it('writes and rewrites the file on disk', async () => {
    const path = join(dir, 'benchmarks.md');
    await writeBenchmarksDoc(path, { load: first });
    await writeBenchmarksDoc(path, { load: second });
    const text = await readFile(path, 'utf8');
    assert.match(text, /\| 2026-01-01 10:00 UTC \|/);
    await writeFile(path, `${text}\ntrailing text outside the markers\n`);
    const again = await writeBenchmarksDoc(path, { load: first });
    assert.doesNotMatch(again, /trailing text outside the markers/);
  });
});
