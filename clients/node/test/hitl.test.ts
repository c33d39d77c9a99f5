/** Human in the loop: the approval workflow asks, waits, and goes on with the answer. */

import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { InvalidArgumentError, WorkflowClient } from '../src';
import type { WorkflowEvent } from '../src';
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

test('approval: wait for INPUT_REQUIRED, answer, get the result', { timeout: 60_000 }, async () => {
  const handle = client.stream('approval', { question: 'Deploy to production?' });
  const seen: WorkflowEvent[] = [];
  for await (const event of handle.events()) {
    seen.push(event);
    if (event.kind === 'INPUT_REQUIRED') {
      break; // leaves the call; the run goes on waiting
    }
  }
  const request = seen.at(-1)!;
  assert.equal(request.kind, 'INPUT_REQUIRED');
  assert.equal(request.data.question, 'Deploy to production?');
  assert.equal(request.step, 'ask');

  assert.equal((await handle.get()).status, 'WAITING_FOR_INPUT');

  await assert.rejects(handle.sendEvent('NoSuchEvent', { response: 'yes' }), (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError, String(e));
    assert.match(e.details, /HumanResponseEvent/);
    return true;
  });
  await assert.rejects(handle.sendEvent('HumanResponseEvent', {}), (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError, String(e));
    assert.match(e.details, /\bresponse\b/);
    return true;
  });

  await handle.sendEvent('HumanResponseEvent', { response: 'yes' });
  assert.deepEqual(await handle.result(), { approved: true, response: 'yes' });

  const rest = await collect(handle.events({ after: request.sequence }));
  assert.equal(rest[0]!.sequence, request.sequence + 1);
  assert.equal(rest.at(-1)!.kind, 'RUN_SUCCEEDED');
  assertWholeRun([...seen, ...rest]);
});

test('approval answered from inside the event loop', { timeout: 60_000 }, async () => {
  const handle = await client.start('approval', { question: 'Delete everything?' });
  const kinds: string[] = [];
  for await (const event of handle.events({ kinds: ['INPUT_REQUIRED'] })) {
    kinds.push(event.kind);
    if (event.kind === 'INPUT_REQUIRED') {
      await client.sendEvent(handle.runId, 'HumanResponseEvent', { response: 'no' });
    }
  }
  assert.deepEqual(kinds, ['INPUT_REQUIRED', 'RUN_SUCCEEDED']);
  assert.deepEqual(await handle.result(), { approved: false, response: 'no' });
});
