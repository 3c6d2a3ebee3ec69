import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MandateError } from '../../controller/src/errors.ts';
import { createLogger } from '../../controller/src/log.ts';
import { WorkQueue, retryDelay, type Outcome } from '../../controller/src/reconcile/queue.ts';
import { ManualScheduler, deferred, flush, type Deferred } from './reconcile-fakes.ts';

const backoff = { initialMs: 100, maxMs: 1000 };

describe('work queue', () => {
  test('a key added many times while it waits is handled once', async () => {
    const scheduler = new ManualScheduler();
    const gate = deferred();
    const runs: string[] = [];
    const q = new WorkQueue<string>({
      name: 't',
      concurrency: 1,
      scheduler,
      handler: async (key) => {
        runs.push(key);
        if (key === 'block') await gate.promise;
      },
    });
    q.add('block');
    q.add('a');
    q.add('a');
    q.add('a');
    assert.equal(q.stats().queued, 1);
    gate.resolve();
    await q.whenIdle();
    assert.deepEqual(runs, ['block', 'a']);
  });

  test('a key is never handled twice at once; added while running, it runs once more after', async () => {
    const scheduler = new ManualScheduler();
    const gates = [deferred(), deferred()];
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const q = new WorkQueue<string>({
      name: 't',
      concurrency: 4,
      scheduler,
      handler: async () => {
        const gate = gates[runs++];
        active++;
        maxActive = Math.max(maxActive, active);
        await gate?.promise;
        active--;
      },
    });
    q.add('a');
    await flush();
    q.add('a');
    q.add('a');
    q.add('a');
    await flush();
    assert.equal(runs, 1, 'the re-added key waits for the running one');
    gates[0]?.resolve();
    await flush();
    assert.equal(runs, 2, 'and then runs exactly once more');
    gates[1]?.resolve();
    await q.whenIdle();
    assert.equal(runs, 2);
    assert.equal(maxActive, 1);
  });

  test('no more than `concurrency` handlers run at a time, and every key gets its turn', async () => {
    const scheduler = new ManualScheduler();
    const gates = new Map<string, Deferred<void>>();
    let active = 0;
    let maxActive = 0;
    const done: string[] = [];
    const q = new WorkQueue<string>({
      name: 't',
      concurrency: 2,
      scheduler,
      handler: async (key) => {
        const gate = deferred();
        gates.set(key, gate);
        active++;
        maxActive = Math.max(maxActive, active);
        await gate.promise;
        active--;
        done.push(key);
      },
    });
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) q.add(k);
    await flush();
    assert.equal(active, 2);
    assert.equal(q.stats().queued, 4);
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) {
      await flush();
      gates.get(k)?.resolve();
    }
    await q.whenIdle();
    assert.equal(maxActive, 2);
    assert.deepEqual(done, ['a', 'b', 'c', 'd', 'e', 'f']);
  });

  test('retriable failures back off exponentially per key with jitter, and success forgets them', async () => {
    const scheduler = new ManualScheduler();
    scheduler.randomValue = () => 0.5;
    const at: number[] = [];
    const q = new WorkQueue<string>({
      name: 't',
      scheduler,
      backoff,
      handler: () => {
        at.push(scheduler.now());
        if (at.length <= 3) return Promise.reject(new MandateError('KUBE_UNAVAILABLE', 'API server down'));
        return Promise.resolve();
      },
    });
    q.add('a');
    await flush();
    assert.equal(q.numRequeues('a'), 1);
    await scheduler.advance(74);
    assert.equal(at.length, 1, 'not before the backoff delay');
    await scheduler.advance(2000);
    // Delays drawn from [nominal/2, nominal): 100 → 75, 200 → 150, 400 → 300 with random 0.5.
    assert.deepEqual(at, [0, 75, 225, 525]);
    assert.equal(q.numRequeues('a'), 0, 'success forgets the failures');
    assert.deepEqual({ ...q.stats(), queued: 0 }, { queued: 0, processing: 0, delayed: 0, succeeded: 1, retried: 3, terminal: 0 });
  });

  test('retry delays stay within [nominal/2, nominal) and never exceed the cap', () => {
    for (let failures = 1; failures <= 40; failures++) {
      const nominal = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (failures - 1));
      for (const r of [0, 0.25, 0.999999]) {
        const d = retryDelay(failures, r, backoff);
        assert.ok(d >= nominal / 2 && d < nominal, `failures=${failures} r=${r}: ${d} not in [${nominal / 2}, ${nominal})`);
        assert.ok(d <= backoff.maxMs);
      }
    }
    assert.ok(retryDelay(2, 0, backoff) > retryDelay(1, 0.999, backoff) - 1, 'the floor grows with failures');
  });

  test('a terminal error is logged and counted, never retried', async () => {
    const scheduler = new ManualScheduler();
    const lines: string[] = [];
    const outcomes: Outcome<string>[] = [];
    let runs = 0;
    const q = new WorkQueue<string>({
      name: 't',
      scheduler,
      backoff,
      log: createLogger({ write: (l) => lines.push(l) }),
      onOutcome: (o) => outcomes.push(o),
      handler: () => {
        runs++;
        return Promise.reject(new MandateError('KUBE_REQUEST', 'forbidden', { status: 403 }));
      },
    });
    q.add('a');
    await scheduler.advance(3_600_000);
    assert.equal(runs, 1);
    assert.equal(q.stats().terminal, 1);
    assert.equal(q.numRequeues('a'), 0);
    assert.equal(outcomes[0]?.outcome, 'terminal');
    assert.equal(outcomes[0]?.error?.code, 'KUBE_REQUEST');
    const logged = lines.map((l) => JSON.parse(l) as { level: string; code?: string; key?: string });
    assert.ok(logged.some((l) => l.level === 'error' && l.code === 'KUBE_REQUEST' && l.key === 'a'));
    q.add('a');
    await flush();
    assert.equal(runs, 2, 'a new add (changed input) runs it again');
  });

  test('anything else thrown is treated as retriable', async () => {
    const scheduler = new ManualScheduler();
    let runs = 0;
    const q = new WorkQueue<string>({
      name: 't',
      scheduler,
      backoff,
      handler: () => {
        runs++;
        return runs === 1 ? Promise.reject(new TypeError('boom')) : Promise.resolve();
      },
    });
    q.add('a');
    await scheduler.advance(200);
    assert.equal(runs, 2);
  });

  test('requeueAfter runs the key again after the delay', async () => {
    const scheduler = new ManualScheduler();
    const at: number[] = [];
    const q = new WorkQueue<string>({
      name: 't',
      scheduler,
      handler: () => {
        at.push(scheduler.now());
        return Promise.resolve(at.length === 1 ? { requeueAfterMs: 5000 } : undefined);
      },
    });
    q.add('a');
    await scheduler.advance(10_000);
    assert.deepEqual(at, [0, 5000]);
  });

  test('an add covers a pending retry: the key runs now and not again when the retry was due', async () => {
    const scheduler = new ManualScheduler();
    scheduler.randomValue = () => 0.5;
    const at: number[] = [];
    const q = new WorkQueue<string>({
      name: 't',
      scheduler,
      backoff,
      handler: () => {
        at.push(scheduler.now());
        return at.length === 1 ? Promise.reject(new MandateError('KUBE_CONFLICT', 'conflict')) : Promise.resolve();
      },
    });
    q.add('a');
    await scheduler.advance(10);
    q.add('a');
    await scheduler.advance(1000);
    assert.deepEqual(at, [0, 10]);
    assert.equal(q.stats().delayed, 0);
  });

  test('shutDown drains queued and running keys, refuses new ones and cancels retries', async () => {
    const scheduler = new ManualScheduler();
    const slow = deferred();
    const runs: string[] = [];
    const q = new WorkQueue<string>({
      name: 't',
      concurrency: 1,
      scheduler,
      backoff,
      handler: async (key) => {
        runs.push(key);
        if (key === 'fail') throw new MandateError('KUBE_UNAVAILABLE', 'down');
        if (key === 'slow') await slow.promise;
      },
    });
    q.add('fail');
    await flush();
    assert.equal(q.stats().delayed, 1);
    q.add('slow');
    q.add('queued');
    await flush();
    let drained = false;
    const done = q.shutDown().then(() => {
      drained = true;
    });
    q.add('late');
    await flush();
    assert.equal(drained, false, 'waits for the running key');
    assert.equal(q.stats().delayed, 0, 'the pending retry is cancelled');
    slow.resolve();
    await done;
    assert.deepEqual(runs, ['fail', 'slow', 'queued']);
    await scheduler.advance(10_000);
    assert.deepEqual(runs, ['fail', 'slow', 'queued']);
    assert.equal(scheduler.pendingTimers, 0);
  });

  test('under random load no key runs concurrently with itself and no add is lost', async () => {
    const scheduler = new ManualScheduler();
    let seed = 42;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    scheduler.randomValue = rand;
    const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
    const active = new Map<string, number>();
    const lastAdd = new Map<string, number>();
    const lastStart = new Map<string, number>();
    let concurrent = 0;
    let maxConcurrent = 0;
    let violations = 0;
    const q = new WorkQueue<string>({
      name: 't',
      concurrency: 3,
      scheduler,
      backoff: { initialMs: 5, maxMs: 50 },
      handler: async (key) => {
        const n = (active.get(key) ?? 0) + 1;
        if (n > 1) violations++;
        active.set(key, n);
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        lastStart.set(key, scheduler.now());
        await new Promise<void>((resolve) => scheduler.setTimeout(resolve, Math.floor(rand() * 20)));
        concurrent--;
        active.set(key, (active.get(key) ?? 1) - 1);
        if (rand() < 0.2) throw new MandateError('KUBE_CONFLICT', 'conflict');
      },
    });
    for (let i = 0; i < 300; i++) {
      const key = keys[Math.floor(rand() * keys.length)] as string;
      scheduler.setTimeout(() => {
        lastAdd.set(key, scheduler.now());
        q.add(key);
      }, Math.floor(rand() * 1000));
    }
    await scheduler.advance(5000);
    await q.whenIdle();
    assert.equal(violations, 0);
    assert.ok(maxConcurrent <= 3);
    for (const [key, added] of lastAdd) {
      assert.ok((lastStart.get(key) ?? -1) >= added, `${key} was added at ${added} but last ran at ${lastStart.get(key)}`);
    }
  });
});
