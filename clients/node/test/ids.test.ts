/** Run ids (no server needed). */

import * as assert from 'node:assert/strict';
import { test } from 'node:test';

import { newRunId } from '../src';

test('run ids are UUIDv7 in 32 hex digits, later ones sorting later', async () => {
  const before = Date.now();
  const id = newRunId();
  assert.match(id, /^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
  const ms = parseInt(id.slice(0, 12), 16);
  assert.ok(ms >= before && ms <= Date.now());
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push(newRunId());
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  assert.deepEqual(ids, [...ids].sort());
  assert.equal(new Set(Array.from({ length: 10000 }, newRunId)).size, 10000);
});
