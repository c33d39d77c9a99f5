/** listWorkflows, listRuns and getRun. */

import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowClient, isEnded } from '../src';
import { ServerProcess, collect, unique } from './helpers';

let server: ServerProcess;
let client: WorkflowClient;

before(async () => {
  server = await ServerProcess.start();
  client = new WorkflowClient(server.address);
});

after(async () => {
  client?.close();
  await server?.stop();
});

test('listWorkflows describes every example with its schemas', { timeout: 30_000 }, async () => {
  const workflows = await client.listWorkflows();
  assert.deepEqual(
    workflows.map((w) => w.name),
    ['approval', 'echo', 'flaky', 'research', 'ticker'],
  );
  const byName = Object.fromEntries(workflows.map((w) => [w.name, w]));
  const echo = byName.echo!;
  assert.deepEqual(echo.steps, ['echo']);
  assert.deepEqual(echo.inputSchema.required, ['message']);
  assert.ok(echo.description.length > 0);
  assert.deepEqual(Object.keys(byName.approval!.acceptedEvents), ['HumanResponseEvent']);
  assert.deepEqual(byName.approval!.acceptedEvents.HumanResponseEvent!.required, ['response']);
});

test('getRun and listRuns, filtered and paged', { timeout: 30_000 }, async () => {
  const label = unique('listing');
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const runId = unique(`r${i}`);
    assert.equal(
      await client.run('echo', { message: `m${i}` }, { runId, labels: { test: label } }),
      `m${i}`,
    );
    ids.push(runId);
  }
  const run = await client.getRun(ids[0]!);
  assert.equal(run.runId, ids[0]);
  assert.equal(run.workflow, 'echo');
  assert.equal(run.status, 'SUCCEEDED');
  assert.ok(isEnded(run));
  assert.deepEqual(run.input, { message: 'm0' });
  assert.equal(run.result, 'm0');
  assert.equal(run.error, null);
  assert.deepEqual(run.labels, { test: label });
  assert.equal(run.timeoutMs, null);
  assert.ok(run.createdAt instanceof Date && run.endedAt instanceof Date);
  assert.ok(run.endedAt.getTime() >= run.createdAt.getTime());
  assert.ok(run.lastSequence >= 3);
  // Nothing after the last event: the stream closes at once, with nothing to resume.
  assert.deepEqual(await collect(client.handle(run.runId).events({ after: run.lastSequence })), []);

  // Newest first, across pages of two.
  const listed = await collect(client.listRuns({ labels: { test: label }, pageSize: 2 }));
  assert.deepEqual(
    listed.map((r) => r.runId),
    [...ids].reverse(),
  );
  const succeeded = await collect(
    client.listRuns({ workflow: 'echo', statuses: ['SUCCEEDED'], labels: { test: label } }),
  );
  assert.equal(succeeded.length, 5);
  assert.deepEqual(
    await collect(client.listRuns({ statuses: ['FAILED'], labels: { test: label } })),
    [],
  );
});
