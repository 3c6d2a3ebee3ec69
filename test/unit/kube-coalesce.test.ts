import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Coalescer } from '../../controller/src/kube/coalesce.ts';
import { until } from './kube-fake-api.ts';

describe('publish coalescing', () => {
  test('a burst of events becomes one run', async () => {
    let runs = 0;
    const c = new Coalescer(20, () => runs++);
    for (let i = 0; i < 100; i++) c.trigger();
    assert.equal(c.pending, true);
    await until(() => runs > 0, 'the coalesced run');
    assert.equal(runs, 1);
    assert.equal(c.pending, false);
  });

  test('an event after a run opens a new window', async () => {
    let runs = 0;
    const c = new Coalescer(5, () => runs++);
    c.trigger();
    await until(() => runs === 1, 'first run');
    c.trigger();
    await until(() => runs === 2, 'second run');
    assert.equal(runs, 2);
  });

  test('events that never stop do not postpone the run forever: the window is not extended', async () => {
    let runs = 0;
    const c = new Coalescer(10, () => runs++);
    const stream = setInterval(() => c.trigger(), 1);
    try {
      await until(() => runs >= 3, 'runs during an endless stream of events', 5000);
    } finally {
      clearInterval(stream);
      c.cancel();
    }
    assert.ok(runs >= 3);
  });

  test('the run is told how long the oldest event waited', async () => {
    let waited = -1;
    const c = new Coalescer(5, (w) => (waited = w));
    c.trigger();
    await until(() => waited >= 0, 'run');
    assert.ok(waited >= 0);
  });

  test('flush runs a pending window at once; cancel drops it', () => {
    let runs = 0;
    const c = new Coalescer(60_000, () => runs++);
    c.flush();
    assert.equal(runs, 0, 'nothing pending, nothing run');
    c.trigger();
    c.flush();
    assert.equal(runs, 1);
    c.trigger();
    c.cancel();
    assert.equal(c.pending, false);
    c.flush();
    assert.equal(runs, 1);
  });
});
