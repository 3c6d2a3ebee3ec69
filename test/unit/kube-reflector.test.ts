import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Change } from '../../controller/src/kube/cache.ts';
import { Reflector, type ListerWatcher } from '../../controller/src/kube/reflector.ts';
import { createLogger, silentLogger, type Logger } from '../../controller/src/log.ts';
import { FakeResource, until } from './kube-fake-api.ts';

interface O {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: { n: number };
}
const keyed = { keyOf: (o: O): string => `${o.metadata.namespace}/${o.metadata.name}`, versionOf: (o: O): string => o.metadata.resourceVersion };
const transform = (raw: unknown): O | undefined => {
  const r = raw as Partial<O>;
  return typeof r?.metadata?.name === 'string' && typeof r.spec?.n === 'number' ? (r as O) : undefined;
};
const obj = (name: string, n = 0) => ({ metadata: { name, namespace: 'ns' }, spec: { n } });
const networkDown = (): Error => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });

const running: Reflector<O>[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

function reflect(source: ListerWatcher, opts: { watchdogMs?: number; onChange?: (c: Change<O>) => void; log?: Logger; pageSize?: number } = {}) {
  const changes: Change<O>[] = [];
  const r = new Reflector<O>({
    name: 'things',
    source,
    transform,
    keyed,
    onChange: (c) => {
      changes.push(c);
      opts.onChange?.(c);
    },
    log: opts.log ?? silentLogger,
    watchdogMs: opts.watchdogMs ?? 60_000,
    backoff: { initialMs: 1, maxMs: 4 },
    pageSize: opts.pageSize ?? 500,
    minWatchMs: 0,
  });
  running.push(r);
  return { r, changes };
}

const summary = (changes: Change<O>[]) => changes.map((c) => `${c.type} ${c.key}`);

describe('reflector: list and sync', () => {
  test('is synced only after the whole (paged) list, and caches every object', async () => {
    const res = new FakeResource();
    for (const n of ['a', 'b', 'c', 'd', 'e']) res.put(obj(n));
    const { r, changes } = reflect(res, { pageSize: 2 });
    assert.equal(r.synced, false);
    r.start();
    await r.whenSynced();
    assert.equal(r.synced, true);
    assert.equal(res.listCalls, 3, 'three pages of two');
    assert.equal(r.cache.size, 5);
    assert.deepEqual(summary(changes).sort(), ['added ns/a', 'added ns/b', 'added ns/c', 'added ns/d', 'added ns/e']);
  });

  test('a failing list is retried with backoff until it succeeds, with the error in health', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    res.listFailures.push(networkDown(), Object.assign(new Error('Service Unavailable'), { statusCode: 503 }));
    const { r } = reflect(res);
    r.start();
    await r.whenSynced();
    const h = r.health();
    assert.equal(res.listCalls, 3);
    assert.equal(h.errors, 2);
    assert.equal(h.lastError?.code, 'KUBE_UNAVAILABLE');
    assert.equal(h.lastError?.status, 503);
    assert.equal(r.cache.size, 1);
  });

  test('a 403 settles waiters that asked for it, but the informer keeps trying and syncs once allowed', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    const forbidden = Object.assign(new Error('Forbidden'), { statusCode: 403, body: { code: 403, reason: 'Forbidden', message: 'secrets is forbidden' } });
    for (let i = 0; i < 5; i++) res.listFailures.push(forbidden);
    const { r } = reflect(res);
    let strictDone = false;
    const strict = r.whenSynced().then(() => (strictDone = true));
    r.start();
    await r.whenSynced({ settleOnTerminal: true });
    assert.equal(r.synced, false);
    assert.equal(r.health().lastError?.code, 'KUBE_REQUEST');
    assert.equal(r.health().lastError?.status, 403);
    assert.equal(strictDone, false, 'a plain whenSynced still waits');
    await strict;
    assert.equal(r.synced, true);
  });

  test('stop before the first sync rejects the waiters and ends the loop', async () => {
    const res = new FakeResource();
    for (let i = 0; i < 1000; i++) res.listFailures.push(networkDown());
    const { r } = reflect(res);
    r.start();
    const waiting = r.whenSynced();
    await until(() => res.listCalls > 2, 'a few failed lists');
    await r.stop();
    await assert.rejects(waiting, { code: 'NOT_READY' });
    const calls = res.listCalls;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(res.listCalls, calls, 'no more attempts after stop');
  });

  test('malformed objects are dropped, the rest are kept', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    res.put({ metadata: { name: 'bad', namespace: 'ns' }, spec: 'nope' });
    const { r } = reflect(res);
    r.start();
    await r.whenSynced();
    assert.deepEqual([...r.cache.keys()], ['ns/a']);
  });
});

describe('reflector: watch', () => {
  test('applies events from the list\'s resourceVersion; bookmarks move the resourceVersion without changes', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    const { r, changes } = reflect(res);
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    assert.equal(res.watchCalls[0]?.resourceVersion, r.health().resourceVersion);
    res.put(obj('a', 1));
    res.put(obj('b'));
    res.remove('ns', 'a');
    await until(() => changes.length === 4, 'three events');
    assert.deepEqual(summary(changes), ['added ns/a', 'updated ns/a', 'added ns/b', 'deleted ns/a']);
    const before = r.health().resourceVersion;
    res.bookmark();
    await until(() => r.health().resourceVersion !== before, 'bookmark');
    assert.equal(changes.length, 4);
  });

  test('a watch that fails is restarted from the last resourceVersion, without a relist, and the cache is kept', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    const { r } = reflect(res);
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    const rv = r.health().resourceVersion;
    res.watchFailures.push(networkDown(), networkDown());
    res.endWatches(Object.assign(new Error('socket hang up'), { cause: { code: 'ECONNRESET' } }));
    await until(() => res.watchCalls.length >= 4 && r.health().watching, 'watch re-established after failures');
    assert.equal(res.listCalls, 1, 'no relist');
    assert.ok(res.watchCalls.slice(1).every((w) => w.resourceVersion === rv));
    assert.equal(r.cache.size, 1, 'cache kept through the errors');
    assert.ok(r.health().errors >= 3);
  });

  test('a watch the server closes normally is resumed; an update made meanwhile is not lost', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    const { r, changes } = reflect(res);
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    res.endWatches();
    res.put(obj('a', 5)); // no watch is open now: the next one must pick it up from its resourceVersion
    await until(() => r.cache.get('ns/a')?.spec.n === 5, 'the update');
    assert.equal(res.listCalls, 1, 'resumed, not relisted');
    assert.deepEqual(summary(changes), ['added ns/a', 'updated ns/a']);
  });

  test('a silent watch is restarted by the watchdog from the same resourceVersion', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    res.silent = true;
    const { r } = reflect(res, { watchdogMs: 30 });
    r.start();
    await r.whenSynced();
    await until(() => r.health().watchdogRestarts >= 2, 'two watchdog restarts');
    assert.equal(res.listCalls, 1, 'a silent watch is restarted, not relisted');
    const rvs = new Set(res.watchCalls.map((w) => w.resourceVersion));
    assert.equal(rvs.size, 1);
    assert.ok(res.watchCalls.every((w) => w.timeoutSeconds >= 1), 'a server-side timeout is always requested');
  });

  test('bookmarks keep a quiet watch alive: the watchdog does not fire', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    const { r } = reflect(res, { watchdogMs: 400 });
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline) {
      res.bookmark();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(r.health().watchdogRestarts, 0);
    assert.equal(res.watchCalls.length, 1);
  });

  test('410 Gone relists, and the relist reports only real changes: no spurious deletes', async () => {
    const res = new FakeResource();
    for (const n of ['keep', 'change', 'drop']) res.put(obj(n));
    const { r, changes } = reflect(res);
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    changes.length = 0;
    // The watch breaks; while it is down things change and the history is compacted away.
    res.watchFailures.push(networkDown());
    res.silent = true;
    res.endWatches();
    await until(() => res.watchCalls.length >= 2, 'failed re-watch');
    res.put(obj('change', 1));
    res.remove('ns', 'drop');
    res.put(obj('new'));
    res.compact();
    res.silent = false;
    res.endWatches();
    await until(() => r.health().relists === 1 && r.health().watching, 'relist after 410');
    assert.deepEqual(summary(changes).sort(), ['added ns/new', 'deleted ns/drop', 'updated ns/change']);
    assert.deepEqual([...r.cache.keys()].sort(), ['ns/change', 'ns/keep', 'ns/new']);
  });

  test('a 410 ERROR event in an open watch relists without a spurious delete', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    res.put(obj('b'));
    const { r, changes } = reflect(res);
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    changes.length = 0;
    res.errorWatches(410);
    await until(() => r.health().relists === 1, 'relist');
    assert.deepEqual(changes, []);
    assert.equal(r.health().changes.deleted, 0);
    assert.equal(r.cache.size, 2);
  });

  test('a handler that throws is contained: later events are still applied and the resourceVersion moves', async () => {
    const res = new FakeResource();
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    const { r } = reflect(res, {
      log,
      onChange: (c) => {
        if (c.key === 'ns/boom') throw new Error('handler bug');
      },
    });
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    res.put(obj('boom'));
    const after = res.put(obj('fine'));
    await until(() => r.cache.has('ns/fine'), 'event after the throwing one');
    assert.equal(r.cache.has('ns/boom'), true);
    await until(() => r.health().resourceVersion === after.metadata.resourceVersion, 'resourceVersion advanced');
    assert.ok(lines.some((l) => l.includes('change handler threw')));
  });

  test('a non-410 ERROR event counts as an error and the watch is re-established', async () => {
    const res = new FakeResource();
    res.put(obj('a'));
    const { r } = reflect(res);
    r.start();
    await r.whenSynced();
    await until(() => r.health().watching, 'watch open');
    res.errorWatches(500);
    await until(() => r.health().errors === 1 && res.watchCalls.length === 2 && r.health().watching, 'second watch');
    assert.equal(r.health().lastError?.status, 500);
    assert.equal(res.listCalls, 1);
  });
});
