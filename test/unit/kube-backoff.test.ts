import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, jittered, nominalDelay } from '../../controller/src/kube/backoff.ts';
import { watchTimeoutSeconds } from '../../controller/src/kube/reflector.ts';

describe('informer backoff', () => {
  test('the nominal delay doubles from the initial delay and stops at the cap', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((n) => nominalDelay(n, 250, 10_000)), [250, 500, 1000, 2000, 4000, 8000, 10_000]);
    assert.equal(nominalDelay(5000, 250, 10_000), 10_000, 'no overflow past the cap');
  });

  test('jitter stays within [nominal/2, nominal]', () => {
    assert.equal(jittered(1000, () => 0), 500);
    assert.equal(jittered(1000, () => 0.999999) < 1000, true);
    assert.equal(jittered(1000, () => 0.5), 750);
    // A misbehaving random source cannot push the delay out of bounds.
    assert.equal(jittered(1000, () => -3), 500);
    assert.equal(jittered(1000, () => 7), 1000);
  });

  test('every delay of a long run of failures is within its bounds, whatever the random draws', () => {
    let seed = 42;
    const random = (): number => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const b = new Backoff({ initialMs: 100, maxMs: 3000, random });
    for (let n = 0; n < 40; n++) {
      const nominal = nominalDelay(n, 100, 3000);
      const d = b.next();
      assert.ok(d >= nominal / 2 && d <= nominal, `attempt ${n}: ${d} outside [${nominal / 2}, ${nominal}]`);
    }
    assert.equal(b.failures, 40);
  });

  test('reset starts again from the initial delay', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 3000, random: () => 1 });
    b.next();
    b.next();
    assert.equal(b.next(), 400);
    b.reset();
    assert.equal(b.failures, 0);
    assert.equal(b.next(), 100);
  });

  test('nonsense bounds are refused', () => {
    assert.throws(() => new Backoff({ initialMs: 0 }), RangeError);
    assert.throws(() => new Backoff({ initialMs: 500, maxMs: 100 }), RangeError);
  });

  test('watches end server-side well inside the watchdog period, jittered', () => {
    assert.equal(watchTimeoutSeconds(300_000, () => 0), 150);
    assert.equal(watchTimeoutSeconds(300_000, () => 0.999), 239);
    assert.equal(watchTimeoutSeconds(1000, () => 0), 1, 'never zero (zero means the server default)');
  });
});
