import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LimiterState, WINDOW_SLOTS, createLimiterState, type WindowSpec } from '../../controller/src/policy/limits.ts';
import { parseDuration } from '../../controller/src/duration.ts';

const T0 = Date.parse('2025-01-06T10:00:00Z');
const MINUTE: WindowSpec = { windowMs: 60_000, capacity: 3 };

/** Checks and, when allowed, consumes: what decide does for one limited call. */
function call(state: LimiterState, key: string, spec: WindowSpec, weight: number, nowMs: number): boolean {
  const check = state.check(key, spec, weight, nowMs);
  if (!check.ok) return false;
  assert.equal(state.commit([{ key, spec, weight }], nowMs), true);
  return true;
}

describe('durations', () => {
  it('parses the CRD duration syntax', () => {
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('0s'), 0);
    for (const bad of ['', '1d', '1.5h', 'h', '1h 30m', '-1s', '10', '1ms']) assert.equal(parseDuration(bad), undefined, bad);
  });
});

describe('limiter', () => {
  it('allows up to the capacity in a window and says when to retry', () => {
    const state = createLimiterState();
    assert.equal(call(state, 'k', MINUTE, 1, T0), true);
    assert.equal(call(state, 'k', MINUTE, 1, T0 + 1_000), true);
    assert.equal(call(state, 'k', MINUTE, 1, T0 + 2_000), true);
    const refused = state.check('k', MINUTE, 1, T0 + 3_000);
    assert.equal(refused.ok, false);
    assert.equal(refused.used, 3);
    assert.equal(refused.full, false);
    // The first call leaves the window within one slot after a full window has passed.
    assert.ok(refused.retryAfterMs > 60_000 - 3_000 - 1, `retryAfter ${refused.retryAfterMs}`);
    assert.ok(refused.retryAfterMs <= 60_000 - 3_000 + 60_000 / WINDOW_SLOTS, `retryAfter ${refused.retryAfterMs}`);
    const again = T0 + 3_000 + refused.retryAfterMs;
    assert.equal(state.check('k', MINUTE, 1, again - 1).ok, false);
    assert.equal(call(state, 'k', MINUTE, 1, again), true);
  });

  it('does not consume on check', () => {
    const state = createLimiterState();
    for (let i = 0; i < 10; i++) assert.equal(state.check('k', MINUTE, 1, T0).ok, true);
    assert.equal(state.size, 0);
    assert.equal(call(state, 'k', MINUTE, 1, T0), true);
    assert.equal(state.check('k', MINUTE, 1, T0).used, 1);
  });

  it('rolls the window over: capacity returns once a full window has passed', () => {
    const state = createLimiterState();
    for (let i = 0; i < 3; i++) assert.equal(call(state, 'k', MINUTE, 1, T0), true);
    assert.equal(call(state, 'k', MINUTE, 1, T0 + 30_000), false);
    assert.equal(call(state, 'k', MINUTE, 1, T0 + 59_999), false);
    assert.equal(call(state, 'k', MINUTE, 1, T0 + 60_000 + 60_000 / WINDOW_SLOTS), true);
    // A long pause clears every slot.
    assert.equal(state.check('k', MINUTE, 1, T0 + 3_600_000).used, 0);
  });

  it('never admits more than the capacity in any window of the given length', () => {
    const state = createLimiterState();
    const spec: WindowSpec = { windowMs: 10_000, capacity: 5 };
    const allowed: number[] = [];
    let seed = 42;
    let now = T0;
    for (let i = 0; i < 5_000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      now += seed % 900; // bursts and gaps, mean ~450 ms
      if (call(state, 'k', spec, 1, now)) allowed.push(now);
    }
    let lo = 0;
    for (let hi = 0; hi < allowed.length; hi++) {
      while ((allowed[lo] as number) <= (allowed[hi] as number) - spec.windowMs) lo++;
      assert.ok(hi - lo + 1 <= spec.capacity, `window ending ${allowed[hi]} holds ${hi - lo + 1}`);
    }
    // And it is not needlessly strict: the long-run rate is close to the limit.
    const span = (allowed[allowed.length - 1] as number) - (allowed[0] as number);
    const rate = allowed.length / (span / spec.windowMs);
    assert.ok(rate > spec.capacity * 0.8, `rate ${rate}`);
  });

  it('sums weights for budgets, tolerating float rounding at the limit', () => {
    const state = createLimiterState();
    const budget: WindowSpec = { windowMs: 3_600_000, capacity: 0.3 };
    assert.equal(call(state, 'b', budget, 0.1, T0), true);
    assert.equal(call(state, 'b', budget, 0.2, T0), true);
    assert.equal(call(state, 'b', budget, 0.01, T0), false);
    const money: WindowSpec = { windowMs: 3_600_000, capacity: 1000 };
    assert.equal(call(state, 'm', money, 600, T0), true);
    assert.equal(call(state, 'm', money, 401, T0), false);
    assert.equal(call(state, 'm', money, 400, T0), true);
    assert.equal(state.check('m', money, 1, T0).ok, false);
    // A single amount above max can never fit: no point in retrying.
    const tooBig = state.check('fresh', money, 1001, T0);
    assert.equal(tooBig.ok, false);
    assert.equal(tooBig.retryAfterMs, 0);
  });

  it('keeps keys apart', () => {
    const state = createLimiterState();
    const one: WindowSpec = { windowMs: 60_000, capacity: 1 };
    assert.equal(call(state, 'a', one, 1, T0), true);
    assert.equal(call(state, 'b', one, 1, T0), true);
    assert.equal(call(state, 'a', one, 1, T0), false);
    assert.equal(state.size, 2);
  });

  it('starts afresh when a key changes its window length', () => {
    const state = createLimiterState();
    const one: WindowSpec = { windowMs: 60_000, capacity: 1 };
    assert.equal(call(state, 'a', one, 1, T0), true);
    assert.equal(call(state, 'a', one, 1, T0), false);
    assert.equal(call(state, 'a', { windowMs: 120_000, capacity: 1 }, 1, T0), true);
  });

  it('sweeps idle keys and refuses new keys when full of live ones', () => {
    const state = new LimiterState({ maxKeys: 3 });
    for (const key of ['a', 'b', 'c']) assert.equal(call(state, key, MINUTE, 1, T0), true);
    const refused = state.check('d', MINUTE, 1, T0 + 1_000);
    assert.equal(refused.ok, false);
    assert.equal(refused.full, true);
    assert.equal(state.stats().refusedFull, 1);
    // Existing keys still work while the state is full.
    assert.equal(call(state, 'a', MINUTE, 1, T0 + 1_000), true);
    // Once the windows have passed, the keys are idle and make room.
    const later = T0 + 2 * 60_000 + 10_000;
    assert.equal(call(state, 'd', MINUTE, 1, later), true);
    assert.ok(state.stats().sweptIdle >= 1);
    assert.ok(state.size <= 3);
  });

  it('sweeps idle keys as it goes, so the state shrinks without pressure', () => {
    const state = createLimiterState();
    for (let i = 0; i < 50; i++) assert.equal(call(state, `k${i}`, MINUTE, 1, T0), true);
    assert.equal(state.size, 50);
    let now = T0 + 10 * 60_000;
    const wide: WindowSpec = { windowMs: 60_000, capacity: 1_000 };
    for (let i = 0; i < 30 && state.size > 1; i++) assert.equal(call(state, 'probe', wide, 1, (now += 1_000)), true);
    assert.equal(state.size, 1); // only the probe's own key is left
    assert.equal(state.stats().sweptIdle, 50);
  });

  it('commits all charges of a call or none', () => {
    const state = new LimiterState({ maxKeys: 2 });
    assert.equal(call(state, 'a', MINUTE, 1, T0), true);
    const charges = [
      { key: 'x', spec: MINUTE, weight: 1 },
      { key: 'y', spec: MINUTE, weight: 1 },
    ];
    assert.equal(state.commit(charges, T0), false);
    assert.equal(state.size, 1);
    assert.equal(state.check('x', MINUTE, 1, T0).used, 0);
    assert.equal(state.commit([{ key: 'a', spec: MINUTE, weight: 1 }, charges[0]!], T0), true);
    assert.equal(state.check('a', MINUTE, 1, T0).used, 2);
  });

  it('counts time that runs backwards into the current slot', () => {
    const state = createLimiterState();
    const one: WindowSpec = { windowMs: 60_000, capacity: 1 };
    assert.equal(call(state, 'a', one, 1, T0 + 30_000), true);
    assert.equal(call(state, 'a', one, 1, T0), false);
  });

  it('rejects a nonsensical key cap', () => {
    assert.throws(() => new LimiterState({ maxKeys: 0 }), RangeError);
  });
});
