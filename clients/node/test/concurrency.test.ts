/** Many runs at once, each streamed on its own call over one channel. */

import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowClient } from '../src';
import type { RunHandle, WorkflowEvent } from '../src';
import { ServerProcess, assertWholeRun, collect } from './helpers';

let server: ServerProcess;
let client: WorkflowClient;

before(async () => {
  server = await ServerProcess.start();
  client = new WorkflowClient(server.address, { reconnectDelayMs: 50 });
});

after(async () => {
  client?.close();
  await server?.stop();
});

test('200 concurrent runs, each streamed whole and in order', { timeout: 120_000 }, async () => {
  const runs = 200;
  const count = 5;
  // Half start their run in the stream call itself, half start it first and then stream it.
  const handles: RunHandle[] = await Promise.all(
    Array.from({ length: runs }, (_, i) =>
      i % 2 === 0
        ? client.stream('ticker', { count, interval_ms: 10 }, { labels: { i: String(i) } })
        : client.start('ticker', { count, interval_ms: 10 }, { labels: { i: String(i) } }),
    ),
  );
  const streams: WorkflowEvent[][] = await Promise.all(handles.map((h) => collect(h.events())));

  assert.equal(new Set(handles.map((h) => h.runId)).size, runs);
  streams.forEach((events, i) => {
    assertWholeRun(events);
    assert.ok(events.every((e) => e.runId === handles[i]!.runId));
    const ticks = events.filter((e) => e.kind === 'STREAM');
    assert.deepEqual(
      ticks.map((e) => e.data),
      Array.from({ length: count }, (_, n) => ({ n: n + 1, count })),
    );
    assert.deepEqual(events[0]!.data, { count, interval_ms: 10 });
    assert.deepEqual(events.at(-1)!.data, { result: count });
    assert.ok(events.every((e) => e.time instanceof Date && !Number.isNaN(e.time.getTime())));
  });
  const results = await Promise.all(handles.map((h) => h.result()));
  assert.deepEqual(results, Array(runs).fill(count));
});
