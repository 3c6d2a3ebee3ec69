import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { applyEvent, diffRelist } from '../../controller/src/kube/cache.ts';

interface O {
  name: string;
  rv: string;
}
const keyed = { keyOf: (o: O): string => `ns/${o.name}`, versionOf: (o: O): string => o.rv };
const o = (name: string, rv: string): O => ({ name, rv });

describe('informer cache: relist diff', () => {
  test('a relist of unchanged objects changes nothing: no delete-then-add for objects that still exist', () => {
    const cache = new Map([['ns/a', o('a', '1')], ['ns/b', o('b', '2')]]);
    const { next, changes } = diffRelist(cache, [o('b', '2'), o('a', '1')], keyed);
    assert.deepEqual(changes, []);
    assert.deepEqual([...next.keys()].sort(), ['ns/a', 'ns/b']);
  });

  test('only missing objects are deleted; changed ones are updates; new ones adds', () => {
    const cache = new Map([['ns/a', o('a', '1')], ['ns/b', o('b', '2')], ['ns/c', o('c', '3')]]);
    const { next, changes } = diffRelist(cache, [o('a', '1'), o('b', '7'), o('d', '8')], keyed);
    assert.deepEqual(
      changes.map((c) => `${c.type} ${c.key}`).sort(),
      ['added ns/d', 'deleted ns/c', 'updated ns/b'],
    );
    assert.equal(next.get('ns/b')?.rv, '7');
    assert.equal(next.has('ns/c'), false);
    assert.equal(changes.find((c) => c.type === 'deleted')?.object.rv, '3', 'a delete carries the last known object');
  });

  test('the cache passed in is not modified', () => {
    const cache = new Map([['ns/a', o('a', '1')]]);
    diffRelist(cache, [], keyed);
    assert.equal(cache.size, 1);
  });

  test('an empty relist of an empty cache is empty', () => {
    assert.deepEqual(diffRelist(new Map<string, O>(), [], keyed).changes, []);
  });
});

describe('informer cache: watch events', () => {
  test('a repeated event with the cached resourceVersion is not a change', () => {
    const cache = new Map([['ns/a', o('a', '1')]]);
    assert.equal(applyEvent(cache, 'ADDED', o('a', '1'), keyed), undefined);
    assert.equal(applyEvent(cache, 'MODIFIED', o('a', '1'), keyed), undefined);
  });

  test('the change type follows the cache, not the event', () => {
    const cache = new Map<string, O>();
    assert.equal(applyEvent(cache, 'MODIFIED', o('a', '1'), keyed)?.type, 'added');
    assert.equal(applyEvent(cache, 'ADDED', o('a', '2'), keyed)?.type, 'updated');
    assert.equal(cache.get('ns/a')?.rv, '2');
    assert.equal(applyEvent(cache, 'DELETED', o('zz', '3'), keyed), undefined, 'deleting an unknown object is nothing');
    assert.equal(applyEvent(cache, 'DELETED', o('a', '4'), keyed)?.type, 'deleted');
    assert.equal(cache.size, 0);
  });
});
