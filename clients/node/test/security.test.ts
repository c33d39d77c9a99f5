/** Bearer tokens and mutual TLS: a server process that requires both, throw-away
 * certificates made by the Python test helper. */

import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
  WorkflowClient,
} from '../src';
import type { ClientOptions } from '../src';
import { PYTHON, REPO_ROOT, ServerProcess, collect } from './helpers';

const ADMIN = randomBytes(24).toString('base64url');
const READER = randomBytes(24).toString('base64url');

let server: ServerProcess;
let dir: string;
let tls: { rootCerts: Buffer; clientCert: Buffer; clientKey: Buffer };

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wf-node-tls-'));
  const script =
    'import sys, pathlib; from tests.security.certs import make_certificates; ' +
    'make_certificates(pathlib.Path(sys.argv[1]))';
  execFileSync(PYTHON, ['-c', script, dir], { cwd: REPO_ROOT });
  const tokens = {
    tokens: [
      { name: 'admin', token: ADMIN, scopes: ['*'] },
      { name: 'reader', token: READER, scopes: ['read'] },
    ],
  };
  writeFileSync(path.join(dir, 'tokens.json'), JSON.stringify(tokens));
  tls = {
    rootCerts: readFileSync(path.join(dir, 'ca.crt')),
    clientCert: readFileSync(path.join(dir, 'client.crt')),
    clientKey: readFileSync(path.join(dir, 'client.key')),
  };
  server = await ServerProcess.start(30_000, [
    ...['--auth-tokens-file', path.join(dir, 'tokens.json')],
    ...['--tls-cert', path.join(dir, 'server.crt'), '--tls-key', path.join(dir, 'server.key')],
    ...['--tls-client-ca', path.join(dir, 'ca.crt')],
  ]);
});

after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function withClient(
  options: ClientOptions,
  body: (client: WorkflowClient) => Promise<void>,
): Promise<void> {
  // By name: the certificate names localhost too, and TLS server names are not IPs.
  const client = new WorkflowClient(`localhost:${server.port}`, {
    reconnectAttempts: 0,
    ...options,
  });
  try {
    await body(client);
  } finally {
    client.close();
  }
}

test('a token and a client certificate: runs, streams, lists', { timeout: 60_000 }, async () => {
  await withClient({ token: ADMIN, tls }, async (client) => {
    assert.equal(await client.run('echo', { message: 'over mtls' }), 'over mtls');
    const events = await collect(client.stream('ticker', { count: 3, interval_ms: 1 }).events());
    assert.equal(events.at(-1)?.kind, 'RUN_SUCCEEDED');
    assert.ok((await client.listWorkflows()).some((w) => w.name === 'echo'));
  });
});

test('no token is UnauthenticatedError; a read-only token cannot run', async () => {
  await withClient({ tls }, async (client) => {
    await assert.rejects(client.listWorkflows(), UnauthenticatedError);
  });
  await withClient({ token: READER, tls }, async (client) => {
    assert.ok((await client.listWorkflows()).length > 0);
    await assert.rejects(client.run('echo', { message: 'x' }), PermissionDeniedError);
    await assert.rejects(
      collect(client.stream('echo', { message: 'x' }).events()),
      PermissionDeniedError,
    );
  });
});

test('plaintext, or TLS without a client certificate, cannot connect', async () => {
  await withClient({ token: ADMIN }, async (client) => {
    await assert.rejects(client.listWorkflows(), UnavailableError);
  });
  await withClient({ token: ADMIN, tls: { rootCerts: tls.rootCerts } }, async (client) => {
    await assert.rejects(client.listWorkflows(), UnavailableError);
  });
});

test('unusable options are refused at once', () => {
  assert.throws(() => new WorkflowClient(server.address, { token: 'Bearer x' }), TypeError);
  assert.throws(
    () => new WorkflowClient(server.address, { tls: { clientCert: tls.clientCert } }),
    TypeError,
  );
});
