/** Struct/Value conversion (no server needed). */

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromStruct, fromValue, toStruct, toValue } from '../src';

test('plain values survive a round trip through Struct', () => {
  const value = {
    s: 'text',
    n: 1.5,
    i: -3,
    t: true,
    f: false,
    z: null,
    list: [1, 'two', [3], { four: 4 }, null],
    nested: { deeper: { deepest: [] }, empty: {} },
  };
  assert.deepEqual(fromStruct(toStruct(value)), value);
  for (const v of [null, 0, '', 'x', true, [], [1, [2]], { a: { b: null } }]) {
    assert.deepEqual(fromValue(toValue(v)), v);
  }
});

test('conversion follows JSON.stringify', () => {
  const when = new Date('2026-01-02T03:04:05.678Z');
  const struct = toStruct({ when, gone: undefined, fn: () => 1, list: [undefined, 2] });
  assert.deepEqual(fromStruct(struct), { when: when.toISOString(), list: [null, 2] });
  assert.deepEqual(fromValue(toValue(10n)), 10);
  assert.deepEqual(toStruct(undefined), { fields: {} });
  assert.deepEqual(fromStruct(null), {});
  assert.equal(fromValue(null), null);
  assert.equal(fromValue({}), null);
});

test('what JSON cannot hold is refused', () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => toStruct(cyclic), /circular/);
  assert.throws(() => toStruct([1, 2] as unknown as object), TypeError);
  assert.throws(() => toValue(Symbol('s')), TypeError);
  assert.throws(() => toValue(2n ** 64n), TypeError);
  // A value seen twice but not inside itself is fine.
  const shared = { x: 1 };
  assert.deepEqual(fromStruct(toStruct({ a: shared, b: shared })), { a: { x: 1 }, b: { x: 1 } });
});
