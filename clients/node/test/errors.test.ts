/** Error statuses arrive as typed errors; runs that did not succeed throw RunErrors. */

import * as assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  RunCancelledError,
  RunError,
  RunFailedError,
  RunTimedOutError,
  UnavailableError,
  WorkflowClient,
  WorkflowServiceError,
  STATUS_DETAILS_KEY,
  errorFromStatus,
  status,
  statusDetails,
} from '../src';
import { ServerProcess, assertWholeRun, collect, delay, unique } from './helpers';

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

describe('status codes', { timeout: 60_000 }, () => {
  test('an unknown workflow is NotFoundError, however it is started', async () => {
    const isNotFound = (e: unknown): boolean => {
      assert.ok(e instanceof NotFoundError, String(e));
      assert.ok(e instanceof WorkflowServiceError);
      assert.equal(e.code, status.NOT_FOUND);
      assert.equal(e.codeName, 'NOT_FOUND');
      assert.match(e.details, /no workflow named 'nope'/);
      assert.match(e.details, /echo/); // it lists what the server hosts
      return true;
    };
    await assert.rejects(client.run('nope', {}), isNotFound);
    await assert.rejects(client.start('nope', {}), isNotFound);
    await assert.rejects(collect(client.stream('nope', {}).events()), isNotFound);
  });

  test('an unknown run is NotFoundError', async () => {
    await assert.rejects(client.getRun('no-such-run'), NotFoundError);
    await assert.rejects(collect(client.handle('no-such-run').events()), NotFoundError);
    await assert.rejects(client.cancel('no-such-run'), NotFoundError);
  });

  test('bad input is InvalidArgumentError naming the field', async () => {
    await assert.rejects(client.run('ticker', { count: 'many' }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.code, status.INVALID_ARGUMENT);
      assert.match(e.details, /\bcount\b/);
      return true;
    });
    await assert.rejects(client.start('ticker', { count: -1 }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.details, /\bcount\b/);
      return true;
    });
    await assert.rejects(client.run('approval', {}), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.details, /\bquestion\b/);
      return true;
    });
    await assert.rejects(client.run('echo', { message: 'x' }, { timeoutMs: -1 }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.details, /\btimeout\b/);
      return true;
    });
    await assert.rejects(
      client.run('echo', { message: 'x' }, { runId: 'not ok!' }),
      (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.match(e.details, /\brun_id\b/);
        return true;
      },
    );
  });

  test('a run id reused with other input is AlreadyExistsError', async () => {
    const runId = unique('same');
    assert.equal(await client.run('echo', { message: 'a' }, { runId }), 'a');
    assert.equal(await client.run('echo', { message: 'a' }, { runId }), 'a');
    await assert.rejects(client.run('echo', { message: 'b' }, { runId }), AlreadyExistsError);
    await assert.rejects(client.start('ticker', { count: 1 }, { runId }), AlreadyExistsError);
  });

  test('cancelling or sending to an ended run is FailedPreconditionError', async () => {
    const handle = await client.start('echo', { message: 'done' });
    assert.equal(await handle.result(), 'done');
    await assert.rejects(handle.cancel(), FailedPreconditionError);
    await assert.rejects(
      handle.sendEvent('HumanResponseEvent', { response: 'yes' }),
      FailedPreconditionError,
    );
  });

  test('a server nobody listens on is UnavailableError', async () => {
    const nowhere = new WorkflowClient('127.0.0.1:1', {
      reconnectAttempts: 2,
      reconnectDelayMs: 10,
    });
    try {
      await assert.rejects(nowhere.run('echo', { message: 'hi' }), UnavailableError);
      await assert.rejects(nowhere.listWorkflows(), UnavailableError);
      await assert.rejects(
        collect(nowhere.stream('echo', { message: 'hi' }).events()),
        UnavailableError,
      );
    } finally {
      nowhere.close();
    }
  });

  test('codes without their own class map to the base class', () => {
    const e = errorFromStatus(status.ABORTED, 'why');
    assert.equal(e.constructor, WorkflowServiceError);
    assert.equal(e.message, 'ABORTED: why');
    assert.ok(errorFromStatus(status.UNAVAILABLE, '') instanceof UnavailableError);
  });

  test('an unknown event kind or status is refused before any call', async () => {
    const handle = client.handle('whatever');
    await assert.rejects(collect(handle.events({ kinds: ['NOPE'] })), TypeError);
    await assert.rejects(collect(client.listRuns({ statuses: ['NOPE'] })), TypeError);
  });
});

describe('runs that end without a result', { timeout: 60_000 }, () => {
  test('a failed run throws RunFailedError carrying the run', async () => {
    await assert.rejects(client.run('flaky', { failures: 10 }), (e: unknown) => {
      assert.ok(e instanceof RunFailedError, String(e));
      assert.ok(e instanceof RunError);
      assert.equal(e.run.status, 'FAILED');
      assert.equal(e.run.workflow, 'flaky');
      assert.equal(e.run.error?.step, 'attempt');
      assert.match(e.run.error?.message ?? '', /transient failure/);
      return true;
    });
    // The same run's stream ends with RUN_FAILED.
    const handle = client.stream('flaky', { failures: 10 });
    const events = await collect(handle.events());
    assertWholeRun(events, 'RUN_FAILED');
    assert.equal(events.at(-1)!.data.step, 'attempt');
    await assert.rejects(handle.result(), RunFailedError);
  });

  test('a run that retried its way through succeeds', async () => {
    assert.deepEqual(await client.run('flaky', { failures: 2 }), { attempts: 3 });
  });

  test('a run past its timeout throws RunTimedOutError', async () => {
    await assert.rejects(
      client.run('ticker', { count: 100, interval_ms: 50 }, { timeoutMs: 300 }),
      (e: unknown) => {
        assert.ok(e instanceof RunTimedOutError, String(e));
        assert.equal(e.run.status, 'TIMED_OUT');
        assert.equal(e.run.timeoutMs, 300);
        return true;
      },
    );
  });

  test('a cancelled run throws RunCancelledError', async () => {
    const handle = await client.start('ticker', { count: 1000, interval_ms: 20 });
    const result = handle.result();
    await delay(100);
    const run = await handle.cancel();
    assert.equal(run.status, 'CANCELLED');
    await assert.rejects(result, (e: unknown) => {
      assert.ok(e instanceof RunCancelledError, String(e));
      assert.equal(e.run.runId, handle.runId);
      return true;
    });
    const events = await collect(handle.events());
    assertWholeRun(events, 'RUN_CANCELLED');
  });
});

describe('status details', { timeout: 60_000 }, () => {
  test('errors carry their reason, domain and context', async () => {
    await assert.rejects(client.getRun('no-such-run'), (e: unknown) => {
      assert.ok(e instanceof NotFoundError, String(e));
      assert.equal(e.reason, 'RUN_NOT_FOUND');
      assert.equal(e.domain, 'workflow.v1');
      assert.deepEqual(e.errorMetadata, { run_id: 'no-such-run' });
      assert.deepEqual(e.fieldViolations, []);
      assert.equal(e.retryAfter, undefined);
      return true;
    });
  });

  test('bad input lists each bad field', async () => {
    await assert.rejects(client.run('ticker', { count: -1, interval_ms: 'soon' }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.reason, 'INPUT_INVALID');
      assert.deepEqual(e.fieldViolations.map((v) => v.field).sort(), [
        'input.count',
        'input.interval_ms',
      ]);
      assert.ok(e.fieldViolations.every((v) => v.description.length > 0));
      return true;
    });
  });

  test('unreadable or missing details leave the fields empty', () => {
    const garbage = new Metadata();
    garbage.set(STATUS_DETAILS_KEY, Buffer.from([0x1a, 0xff, 0xff]));
    for (const trailers of [garbage, new Metadata(), undefined]) {
      const details = statusDetails(trailers);
      assert.deepEqual(details, {
        reason: '',
        domain: '',
        errorMetadata: {},
        fieldViolations: [],
        retryAfter: undefined,
      });
    }
  });

  test('RESOURCE_EXHAUSTED says when to retry', async () => {
    const options = ['--max-concurrent-runs', '1', '--shutdown-grace', '0'];
    const limited = await ServerProcess.start(30_000, options);
    const limitedClient = new WorkflowClient(limited.address);
    try {
      await limitedClient.start('approval', { question: 'hold the only slot' });
      const second = limitedClient.start('approval', { question: 'one more' });
      await assert.rejects(second, (e: unknown) => {
        assert.ok(e instanceof ResourceExhaustedError, String(e));
        assert.equal(e.reason, 'TOO_MANY_RUNS');
        assert.ok(e.retryAfter !== undefined && e.retryAfter > 0 && e.retryAfter <= 60);
        return true;
      });
    } finally {
      limitedClient.close();
      await limited.stop();
    }
  });
});
