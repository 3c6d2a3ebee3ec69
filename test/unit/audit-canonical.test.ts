import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalExtend, canonicalJson } from '../../controller/src/audit/canonical.ts';
import { isMandateError } from '../../controller/src/errors.ts';

const fromBits = (hex: string): number => {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt('0x' + hex));
  return view.getFloat64(0);
};

const refused = (value: unknown, pattern: RegExp) =>
  assert.throws(() => canonicalJson(value), (err: unknown) => isMandateError(err, 'INTERNAL') && pattern.test(err.message));

describe('canonical JSON (RFC 8785)', () => {
  it('reproduces the RFC 8785 section 3.2.2 example', () => {
    const input = JSON.parse(String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`) as unknown;
    assert.equal(
      canonicalJson(input),
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
    );
  });

  it('sorts member names by UTF-16 code units (RFC 8785 section 3.2.3 example)', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    // The emoji (U+1F600) sorts before U+FB33: its first code unit is 0xD83D. By code point it would not.
    assert.equal(
      canonicalJson(input),
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('serialises numbers as ECMAScript does (RFC 8785 appendix B style vectors)', () => {
    const cases: [number, string][] = [
      [fromBits('0000000000000000'), '0'],
      [fromBits('8000000000000000'), '0'],
      [fromBits('0000000000000001'), '5e-324'],
      [fromBits('8000000000000001'), '-5e-324'],
      [fromBits('7fefffffffffffff'), '1.7976931348623157e+308'],
      [fromBits('4340000000000000'), '9007199254740992'],
      [fromBits('c340000000000000'), '-9007199254740992'],
      [1e21, '1e+21'],
      [1e20, '100000000000000000000'],
      [0.000001, '0.000001'],
      [1e-7, '1e-7'],
      [4.5, '4.5'],
      [-1.5e-9, '-1.5e-9'],
    ];
    for (const [n, text] of cases) assert.equal(canonicalJson(n), text, `bits of ${text}`);
    assert.equal(canonicalJson([0.1 + 0.2]), '[0.30000000000000004]');
  });

  it('escapes strings exactly as JSON.stringify, control characters in lower-case hex', () => {
    assert.equal(canonicalJson('\u0000\b\t\n\f\r\u001f'), '"\\u0000\\b\\t\\n\\f\\r\\u001f"');
    assert.equal(canonicalJson('a"b\\c/d'), '"a\\"b\\\\c/d"');
    assert.equal(canonicalJson('\u2028\u2029\u007f'), '"\u2028\u2029\u007f"');
    assert.equal(canonicalJson('plain'), '"plain"');
  });

  it('has no whitespace, drops undefined members, keeps nesting', () => {
    assert.equal(canonicalJson({ b: [1, { d: undefined, c: null }], a: {}, e: [] }), '{"a":{},"b":[1,{"c":null}],"e":[]}');
    assert.equal(canonicalJson(Object.assign(Object.create(null) as object, { z: true, y: false })), '{"y":false,"z":true}');
  });

  it('keeps an own "__proto__" member that JSON.parse created', () => {
    assert.equal(canonicalJson(JSON.parse('{"__proto__":{"x":1},"a":2}')), '{"__proto__":{"x":1},"a":2}');
  });

  it('refuses non-finite numbers, naming where they are', () => {
    refused(NaN, /non-finite number NaN at \$$/);
    refused({ a: [1, Infinity] }, /non-finite number Infinity at \$\.a\[1\]/);
    refused({ a: { b: -Infinity } }, /-Infinity at \$\.a\.b/);
  });

  it('refuses what is not JSON data instead of coercing it', () => {
    refused(undefined, /undefined value/);
    refused([1, undefined], /undefined array element at \$\[1\]/);
    refused({ d: new Date(0) }, /not plain JSON data at \$\.d/);
    refused(new Map(), /not plain JSON data/);
    refused(Buffer.from('x'), /not plain JSON data/);
    refused({ n: 1n }, /type bigint/);
    refused({ f: () => 1 }, /type function/);
    refused(Symbol('s'), /type symbol/);
    class Point { x = 1; }
    refused(new Point(), /not plain JSON data/);
  });

  it('refuses lone surrogates in values and in member names (I-JSON)', () => {
    refused('a\ud800b', /lone surrogate/);
    refused({ ['k\udc00']: 1 }, /lone surrogate/);
  });

  it('refuses nesting deeper than its limit without overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    refused(deep, /nesting deeper than 200/);
  });

  it('canonicalExtend gives the texts of the object without and with the extra member', () => {
    const objects: Record<string, unknown>[] = [
      {},
      { a: 1 },
      { z: 1 },
      { a: 1, z: [2, { y: 'x' }], m: undefined },
      { hash: undefined, seq: 3, prev: 'p', kind: 'k' },
    ];
    for (const obj of objects) {
      for (const key of ['hash', 'a0', '~']) {
        if (Object.hasOwn(obj, key)) continue;
        let seen = '';
        const texts = canonicalExtend(obj, key, (without) => {
          seen = without;
          return without.length;
        });
        assert.equal(texts.without, canonicalJson(obj));
        assert.equal(seen, texts.without);
        assert.equal(texts.with, canonicalJson({ ...obj, [key]: texts.without.length }));
      }
    }
    assert.throws(() => canonicalExtend({ hash: 1 }, 'hash', () => 2), /already present/);
    assert.throws(() => canonicalExtend({ a: { b: NaN } }, 'hash', () => 2), /NaN at \$\.a\.b/);
  });
});
