import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isMandateError } from '../../controller/src/errors.ts';
import { LeaderElector, microTime, type LeaderElectorOptions } from '../../controller/src/reconcile/leader.ts';
import { FakeLeaseApi, FakeLeaseStore, ManualScheduler } from './reconcile-fakes.ts';

const LEASE = 15_000;
const DEADLINE = 10_000;
const RETRY = 2_000;

interface Candidate {
  readonly elector: LeaderElector;
  readonly api: FakeLeaseApi;
  readonly log: string[];
}

function candidate(identity: string, store: FakeLeaseStore, scheduler: ManualScheduler, over: Partial<LeaderElectorOptions> = {}): Candidate {
  const api = new FakeLeaseApi(store);
  const log: string[] = [];
  const elector = new LeaderElector({
    identity,
    api,
    leaseDurationMs: LEASE,
    renewDeadlineMs: DEADLINE,
    retryPeriodMs: RETRY,
    scheduler,
    onStartedLeading: () => void log.push(`start@${scheduler.now()}`),
    onStoppedLeading: () => void log.push(`stop@${scheduler.now()}`),
    ...over,
  });
  return { elector, api, log };
}

const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

describe('leader election', () => {
  test('microTime writes six fractional digits in UTC', () => {
    assert.equal(microTime(new Date('2025-06-01T12:00:00.123Z')), '2025-06-01T12:00:00.123000Z');
  });

  test('rejects timings where a standby could take over before the leader gives up', () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    assert.throws(() => candidate('a', store, scheduler, { renewDeadlineMs: LEASE }), (err) => isMandateError(err, 'CONFIG_INVALID'));
    assert.throws(() => candidate('a', store, scheduler, { retryPeriodMs: DEADLINE }), (err) => isMandateError(err, 'CONFIG_INVALID'));
  });

  test('a lone candidate creates the Lease with the Lease fields set and becomes leader', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const a = candidate('pod-a', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    assert.equal(a.elector.isLeader(), true);
    assert.deepEqual(a.log, ['start@0']);
    const spec = store.record?.spec;
    assert.equal(spec?.holderIdentity, 'pod-a');
    assert.equal(spec?.leaseDurationSeconds, 15);
    assert.equal(spec?.leaseTransitions, 0);
    assert.match(spec?.acquireTime ?? '', MICRO_TIME);
    assert.equal(spec?.renewTime, spec?.acquireTime);
    await a.elector.stop();
  });

  test('the leader renews every retry period: renewTime moves, acquireTime and transitions stay', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const a = candidate('pod-a', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    const acquired = store.record?.spec.acquireTime;
    const writes = store.writes;
    await scheduler.advance(RETRY * 3);
    assert.equal(store.writes, writes + 3);
    assert.equal(store.record?.spec.acquireTime, acquired);
    assert.equal(store.record?.spec.renewTime, microTime(scheduler.wallTime()));
    assert.equal(store.record?.spec.leaseTransitions, 0);
    await a.elector.stop();
  });

  test('of two candidates exactly one leads, for as long as the leader renews', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const a = candidate('pod-a', store, scheduler);
    const b = candidate('pod-b', store, scheduler);
    a.elector.start();
    b.elector.start();
    for (let t = 0; t < 120_000; t += 500) {
      await scheduler.advance(500);
      assert.equal(Number(a.elector.isLeader()) + Number(b.elector.isLeader()), 1, `at ${scheduler.now()} ms`);
    }
    assert.deepEqual(b.log, []);
    assert.equal(b.elector.currentLeader(), 'pod-a');
    await b.elector.stop();
    await a.elector.stop();
  });

  test('a write race for a free Lease is settled by resourceVersion: the loser gets 409 and stands by', async () => {
    const store = new FakeLeaseStore();
    store.put({ holderIdentity: '', leaseDurationSeconds: 1, leaseTransitions: 4 });
    const scheduler = new ManualScheduler();
    const b = candidate('pod-b', store, scheduler);
    // Just before b's update lands, pod-a takes the Lease (as if its update reached the server first).
    store.beforeUpdate = () => {
      store.beforeUpdate = undefined;
      store.put({ ...store.record?.spec, holderIdentity: 'pod-a', leaseDurationSeconds: 15, leaseTransitions: 5 });
    };
    b.elector.start();
    await scheduler.advance(0);
    assert.equal(b.elector.isLeader(), false);
    assert.equal(store.record?.spec.holderIdentity, 'pod-a');
    await scheduler.advance(RETRY * 3);
    assert.equal(b.elector.isLeader(), false, 'pod-a holds it and, as observed by pod-b, it has not expired');
    await b.elector.stop();
  });

  test('graceful stop: leader work stops first, then the Lease is released and a standby takes over at its next poll', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const order: string[] = [];
    const a = candidate('pod-a', store, scheduler, {
      onStoppedLeading: () => void order.push(`stopped; lease holder ${store.record?.spec.holderIdentity}`),
    });
    const b = candidate('pod-b', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    b.elector.start();
    await scheduler.advance(RETRY * 5);
    assert.equal(a.elector.isLeader(), true);
    const transitions = store.record?.spec.leaseTransitions ?? -1;

    const stoppedAt = scheduler.now();
    await a.elector.stop();
    assert.deepEqual(order, ['stopped; lease holder pod-a']);
    assert.equal(a.elector.isLeader(), false);
    assert.equal(store.record?.spec.holderIdentity, '');
    assert.equal(store.record?.spec.leaseDurationSeconds, 1);

    const took = await scheduler.advanceUntil(() => b.elector.isLeader(), LEASE);
    assert.ok(scheduler.now() - stoppedAt <= RETRY * 2.2 + 10, `took ${took} ms`);
    assert.equal(store.record?.spec.holderIdentity, 'pod-b');
    assert.equal(store.record?.spec.leaseTransitions, transitions + 1);
    assert.equal(store.record?.spec.renewTime, store.record?.spec.acquireTime);
    await b.elector.stop();
  });

  test('a crashed leader is replaced only after the lease duration, as observed by the standby', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const a = candidate('pod-a', store, scheduler);
    const b = candidate('pod-b', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    b.elector.start();
    await scheduler.advance(RETRY * 4);
    // Crash: pod-a's calls stop reaching the API server (it never releases).
    a.api.hang = true;
    const lastRenew = scheduler.now();
    await scheduler.advance(LEASE - RETRY);
    assert.equal(b.elector.isLeader(), false, 'not while the lease may still be valid');
    const took = await scheduler.advanceUntil(() => b.elector.isLeader(), LEASE * 2);
    const elapsed = scheduler.now() - lastRenew;
    assert.ok(elapsed >= LEASE, `took over ${elapsed} ms after the last renew`);
    // At most one candidate period to see the last renew, then it wakes when the lease expires.
    assert.ok(elapsed <= LEASE + RETRY * 2.2 + 2, `took over ${elapsed} ms after the last renew (${took})`);
    assert.equal(a.elector.isLeader(), false, 'the hung leader gave up at its renew deadline');
    assert.ok(a.log.some((l) => l.startsWith('stop@')));
    await b.elector.stop();
  });

  test('a leader that cannot renew gives up at the renew deadline, before anyone could take over', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const a = candidate('pod-a', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    await scheduler.advance(RETRY);
    const lastRenew = scheduler.now();
    a.api.down = true;
    await scheduler.advanceUntil(() => !a.elector.isLeader(), LEASE);
    const gaveUp = scheduler.now() - lastRenew;
    assert.ok(gaveUp >= DEADLINE && gaveUp < LEASE, `gave up ${gaveUp} ms after the last renew`);
    assert.deepEqual(a.log, ['start@0', `stop@${scheduler.now()}`]);
    // Once the API server is back and the Lease still names it, it leads again.
    a.api.down = false;
    await scheduler.advanceUntil(() => a.elector.isLeader(), RETRY * 3);
    assert.equal(a.log.filter((l) => l.startsWith('start@')).length, 2);
    await a.elector.stop();
  });

  test('the renew deadline holds even when timers fire early and the API server never answers', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    scheduler.earlyMs = 1;
    const a = candidate('pod-a', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    await scheduler.advance(RETRY);
    const lastRenew = scheduler.now();
    a.api.hang = true;
    await scheduler.advanceUntil(() => !a.elector.isLeader(), LEASE, 1);
    const gaveUp = scheduler.now() - lastRenew;
    // The renew itself ran up to 1 ms before `lastRenew` (its timer fired early too).
    assert.ok(gaveUp >= DEADLINE - 1 && gaveUp <= DEADLINE + 2, `gave up ${gaveUp} ms after the last renew`);
    // stop() finishes although the release cannot get through.
    await Promise.all([a.elector.stop(), scheduler.advance(DEADLINE * 3)]);
    assert.equal(store.record?.spec.holderIdentity, 'pod-a', 'not released: the API server never answered');
  });

  test('expiry is judged on the local clock, not on the renewTime written by another machine', async () => {
    const store = new FakeLeaseStore();
    // Held by a pod whose clock is a day behind: renewTime looks ancient, but it is a fresh record.
    store.put({ holderIdentity: 'pod-x', leaseDurationSeconds: 15, renewTime: '2025-05-31T12:00:00.000000Z', acquireTime: '2025-05-31T12:00:00.000000Z', leaseTransitions: 1 });
    const scheduler = new ManualScheduler();
    const b = candidate('pod-b', store, scheduler);
    b.elector.start();
    await scheduler.advance(LEASE - 1000);
    assert.equal(b.elector.isLeader(), false);
    // pod-x renews (a new resourceVersion): the clock restarts.
    store.put({ ...store.record?.spec, renewTime: '2025-05-31T12:00:14.000000Z' });
    await scheduler.advance(LEASE - 1000);
    assert.equal(b.elector.isLeader(), false);
    await scheduler.advanceUntil(() => b.elector.isLeader(), LEASE);
    assert.equal(store.record?.spec.leaseTransitions, 2);
    await b.elector.stop();
  });

  test('a candidate wakes when the Lease it observed expires instead of at its next period', async () => {
    const store = new FakeLeaseStore();
    store.put({ holderIdentity: 'pod-x', leaseDurationSeconds: 15, leaseTransitions: 0 });
    const scheduler = new ManualScheduler();
    scheduler.randomValue = () => 0.5; // candidate period 3.2 s: 15 s is not a multiple of it
    const b = candidate('pod-b', store, scheduler);
    b.elector.start();
    const took = await scheduler.advanceUntil(() => b.elector.isLeader(), LEASE * 2, 1);
    assert.ok(took >= LEASE && took <= LEASE + 2, `took over after ${took} ms`);
    await b.elector.stop();
  });

  test('a Lease taken by someone else while we thought we led ends our leadership at once', async () => {
    const store = new FakeLeaseStore();
    const scheduler = new ManualScheduler();
    const a = candidate('pod-a', store, scheduler);
    a.elector.start();
    await scheduler.advance(0);
    store.put({ ...store.record?.spec, holderIdentity: 'pod-z', leaseTransitions: 1 });
    await scheduler.advance(RETRY);
    assert.equal(a.elector.isLeader(), false);
    assert.equal(a.log.length, 2);
    await a.elector.stop();
    assert.equal(store.record?.spec.holderIdentity, 'pod-z', 'stop does not release a Lease it does not hold');
  });
});
