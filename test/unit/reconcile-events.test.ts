import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MandateError } from '../../controller/src/errors.ts';
import { EventDeduper, EventRecorder, type EventSink, type NewEvent } from '../../controller/src/reconcile/events.ts';
import { ManualScheduler } from './reconcile-fakes.ts';

const regarding = { apiVersion: 'mandate.dev/v1alpha1', kind: 'AgentPolicy', namespace: 'agents', name: 'p', uid: 'u-1' };
const warning = { type: 'Warning' as const, reason: 'CompileFailed', note: 'rule "a" .spec.rules[0].when: syntax error' };

class Sink implements EventSink {
  created: NewEvent[] = [];
  series: { name: string; count: number; at: string }[] = [];
  failNext = false;
  create(e: NewEvent): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new MandateError('KUBE_UNAVAILABLE', 'down'));
    }
    this.created.push(e);
    return Promise.resolve();
  }
  updateSeries(_ns: string, name: string, count: number, at: string): Promise<void> {
    this.series.push({ name, count, at });
    return Promise.resolve();
  }
}

describe('event dedup', () => {
  test('the same event repeated is one Event whose series is patched at most once per interval', () => {
    const d = new EventDeduper({ windowMs: 600_000, seriesIntervalMs: 60_000 });
    assert.deepEqual(d.decide('k', 0), { kind: 'create' });
    d.created('k', 'p.1', 0);
    assert.deepEqual(d.decide('k', 1000), { kind: 'drop' });
    assert.deepEqual(d.decide('k', 30_000), { kind: 'drop' });
    assert.deepEqual(d.decide('k', 61_000), { kind: 'series', name: 'p.1', count: 4 });
    assert.deepEqual(d.decide('k', 62_000), { kind: 'drop' });
    // Quiet for longer than the window: a new Event.
    assert.deepEqual(d.decide('k', 62_000 + 600_001), { kind: 'create' });
  });

  test('memory is bounded: the least recently seen key is forgotten first', () => {
    const d = new EventDeduper({ maxEntries: 2 });
    d.created('a', 'a.1', 0);
    d.created('b', 'b.1', 1);
    assert.equal(d.decide('a', 2).kind, 'drop');
    d.created('c', 'c.1', 3);
    assert.equal(d.size, 2);
    assert.equal(d.decide('b', 4).kind, 'create', 'b was the oldest');
    assert.equal(d.decide('a', 5).kind, 'drop');
  });
});

describe('event recorder', () => {
  test('fills the events.k8s.io fields and folds repeats into a series', async () => {
    const scheduler = new ManualScheduler();
    const sink = new Sink();
    const r = new EventRecorder({ sink, instance: 'mandate-7d9f-abcde', scheduler, seriesIntervalMs: 60_000 });
    await r.emit(regarding, warning, 'Compile');
    const e = sink.created[0];
    assert.ok(e);
    assert.equal(e.namespace, 'agents');
    assert.match(e.name, /^p\.[0-9a-f]{16}$/);
    assert.equal(e.reportingController, 'mandate.dev/controller');
    assert.equal(e.reportingInstance, 'mandate-7d9f-abcde');
    assert.equal(e.action, 'Compile');
    assert.match(e.eventTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.deepEqual(e.regarding, regarding);
    await r.emit(regarding, warning, 'Compile');
    await scheduler.advance(61_000);
    await r.emit(regarding, warning, 'Compile');
    assert.equal(sink.created.length, 1);
    assert.deepEqual(sink.series.map((s) => [s.name, s.count]), [[e.name, 3]]);
    // Another message on the same object is another Event.
    await r.emit(regarding, { ...warning, note: 'rule "b" .spec.rules[1].when: x' }, 'Compile');
    assert.equal(sink.created.length, 2);
  });

  test('notes are cut to the 1 KiB the API allows; a failed create is forgotten and tried again next time', async () => {
    const scheduler = new ManualScheduler();
    const sink = new Sink();
    const r = new EventRecorder({ sink, instance: 'pod', scheduler });
    sink.failNext = true;
    await r.emit(regarding, { ...warning, note: 'é'.repeat(2000) }, 'Compile');
    assert.equal(sink.created.length, 0);
    await r.emit(regarding, { ...warning, note: 'é'.repeat(2000) }, 'Compile');
    assert.equal(sink.created.length, 1);
    assert.ok(Buffer.byteLength(sink.created[0]?.note ?? '') <= 1024);
  });
});
