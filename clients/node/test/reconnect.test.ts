/** events() survives dropped connections: it reconnects by itself and resumes after the last
 * event it yielded, with no gap and no duplicate. Connections run through a TCP proxy whose
 * sockets the test resets mid-stream. */

import * as assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { UnavailableError, WorkflowClient } from '../src';
import type { RunHandle, WorkflowEvent } from '../src';
import { ServerProcess, TcpProxy, assertWholeRun, collect, delay, unique } from './helpers';

let server: ServerProcess;
let direct: WorkflowClient;
let proxy: TcpProxy;
let viaProxy: WorkflowClient;

before(async () => {
  server = await ServerProcess.start();
  direct = new WorkflowClient(server.address);
});

after(async () => {
  direct?.close();
  await server?.stop();
});

beforeEach(async () => {
  proxy = await new TcpProxy(server.port).start();
  viaProxy = new WorkflowClient(proxy.address, { reconnectDelayMs: 50 });
});

afterEach(async () => {
  viaProxy.close();
  await proxy.close();
});

describe('a dropped connection', { timeout: 60_000 }, () => {
  for (const how of ['stream', 'start'] as const) {
    test(`events() resumes with no gap and no duplicate (${how})`, async () => {
      const count = 30;
      const dropAt = new Set([5, 15, 25]); // after this many events (of 34), reset every connection
      const handle: RunHandle =
        how === 'stream'
          ? viaProxy.stream('ticker', { count, interval_ms: 20 })
          : await viaProxy.start('ticker', { count, interval_ms: 20 });
      const events: WorkflowEvent[] = [];
      let cuts = 0;
      for await (const event of handle.events()) {
        events.push(event);
        if (dropAt.has(events.length)) {
          cuts += proxy.drop() > 0 ? 1 : 0;
        }
      }
      assert.equal(await handle.result(), count);

      assertWholeRun(events); // sequences exactly 1..N, RUN_SUCCEEDED last
      assert.equal(events.filter((e) => e.kind === 'STREAM').length, count);
      assert.equal(cuts, dropAt.size);
      assert.ok(proxy.accepted >= 1 + dropAt.size, `only ${proxy.accepted} connections`);
      // The same run, read directly, has exactly the events collected through the proxy.
      assert.deepEqual(await collect(direct.handle(handle.runId).events()), events);
    });
  }

  test('run() is retried under the same run id, so no second run starts', async () => {
    const label = unique('survivor');
    await viaProxy.run('echo', { message: 'connect' });
    const result = viaProxy.run(
      'ticker',
      { count: 10, interval_ms: 20 },
      { labels: { test: label } },
    );
    await delay(100);
    assert.ok(proxy.drop() > 0);
    assert.equal(await result, 10);
    const runs = await collect(direct.listRuns({ labels: { test: label } }));
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.status, 'SUCCEEDED');
  });

  test('leaving the loop early cancels the call', async () => {
    const handle = viaProxy.stream('ticker', { count: 1000, interval_ms: 5 });
    let n = 0;
    for await (const _ of handle.events()) {
      if (++n === 5) {
        break;
      }
    }
    await delay(100); // what was in flight when the loop ended has arrived
    const before = proxy.bytesFromServer;
    await delay(500); // ~100 ticks, ~300 events, several KiB if it were still streaming
    const streamed = proxy.bytesFromServer - before;
    assert.ok(streamed < 200, `${streamed} bytes arrived after the loop ended`);
    // The run itself goes on: breaking out is not cancelling.
    assert.equal((await handle.get()).status, 'RUNNING');
    assert.equal((await handle.cancel()).status, 'CANCELLED');
  });

  test('events() gives up with UnavailableError when the server is gone for good', async () => {
    const client = new WorkflowClient(proxy.address, {
      reconnectAttempts: 3,
      reconnectDelayMs: 50,
    });
    try {
      const handle = await client.start('ticker', { count: 1000, interval_ms: 10 });
      const events: WorkflowEvent[] = [];
      let began = 0;
      await assert.rejects(async () => {
        for await (const event of handle.events()) {
          events.push(event);
          if (events.length === 5) {
            began = performance.now();
            await proxy.close(); // stop listening and cut everything
          }
        }
      }, UnavailableError);
      assert.ok(performance.now() - began < 2_000);
      assert.deepEqual(
        events.map((e) => e.sequence),
        events.map((_, i) => i + 1),
      );
      await direct.cancel(handle.runId);
    } finally {
      client.close();
    }
  });
});

describe('a server that is shutting down', { timeout: 60_000 }, () => {
  test('run() retries no sooner than the RetryInfo the server sends', async () => {
    // A run going on keeps the server in its grace period, refusing new runs.
    const stopping = await ServerProcess.start(30_000, ['--shutdown-grace', '20']);
    const client = new WorkflowClient(stopping.address, { reconnectAttempts: 0 });
    const patient = new WorkflowClient(stopping.address, {
      reconnectAttempts: 1,
      reconnectDelayMs: 10,
    });
    try {
      await client.start('ticker', { count: 100, interval_ms: 100 });
      void stopping.stop(30_000); // SIGTERM now; it would exit when the grace period ends
      let refusal: unknown;
      for (let i = 0; i < 100 && refusal === undefined; i++) {
        await client.run('echo', { message: 'hi' }).catch((e: unknown) => {
          refusal = e;
        });
      }
      assert.ok(refusal instanceof UnavailableError);
      assert.equal(refusal.reason, 'SHUTTING_DOWN');
      assert.equal(refusal.retryAfter, 1);

      const began = performance.now();
      await assert.rejects(patient.run('echo', { message: 'hi' }), UnavailableError);
      // Its own back-off would have retried after 10 ms; the server asked for 1 s.
      assert.ok(performance.now() - began >= 950, `retried after ${performance.now() - began} ms`);
    } finally {
      client.close();
      patient.close();
      await stopping.stop(0); // no need to wait out the grace period
    }
  });
});
