/** Test helpers: a real server in a subprocess, and a TCP proxy whose connections a test can
 * cut. */

import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { WorkflowEvent } from '../src';

/** The repository root; this file runs from clients/node/dist/test/. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const LISTENING = /event=listening address=(\S+):(\d+)/;

/** `python -m service --port 0 --store memory`, started from the repository root. */
export class ServerProcess {
  readonly address: string;
  readonly port: number;
  private readonly child: ChildProcess;
  private readonly log: string[];
  private readonly exited: Promise<void>;

  private constructor(child: ChildProcess, port: number, log: string[], exited: Promise<void>) {
    this.child = child;
    this.port = port;
    this.address = `127.0.0.1:${port}`;
    this.log = log;
    this.exited = exited;
  }

  /** `options` are more server options, e.g. ['--auth-tokens-file', path]. */
  static async start(timeoutMs = 30_000, options: string[] = []): Promise<ServerProcess> {
    const args = ['-m', 'service', '--port', '0', '--store', 'memory', ...options];
    const child = spawn(PYTHON, args, {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const killOnExit = (): void => {
      child.kill('SIGKILL');
    };
    process.on('exit', killOnExit); // never leave a server behind, even when a test crashes
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        process.off('exit', killOnExit);
        resolve();
      });
    });
    const log: string[] = [];
    // Keep reading stderr for the server's whole life: a full pipe would block its logging.
    const lines = createInterface({ input: child.stderr! });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the server did not listen within ${timeoutMs} ms:\n${log.join('\n')}`));
      }, timeoutMs);
      lines.on('line', (line) => {
        if (process.env.SERVER_LOG) {
          process.stderr.write(`[server] ${line}\n`);
        }
        log.push(line);
        if (log.length > 200) {
          log.shift();
        }
        const m = LISTENING.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[2]));
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(`the server exited (${code ?? signal}) before listening:\n${log.join('\n')}`),
        );
      });
    });
    return new ServerProcess(child, port, log, exited);
  }

  /** The last lines the server logged. */
  get stderr(): string {
    return this.log.join('\n');
  }

  /** SIGTERM, then SIGKILL if it is not gone within `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return;
    }
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Listens on 127.0.0.1 and forwards bytes both ways to 127.0.0.1:`upstreamPort`.
 *
 * `drop()` resets every open connection (both sides) but keeps listening; `close()` also
 * stops listening, as if the server were gone for good.
 */
export class TcpProxy {
  port = 0;
  /** Connections accepted so far. */
  accepted = 0;
  /** Bytes forwarded from the server to clients so far. */
  bytesFromServer = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly upstreamPort: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  private accept(client: net.Socket): void {
    this.accepted += 1;
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    for (const [socket, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.sockets.add(socket);
      socket.on('error', () => undefined); // a reset is what the tests are about
      socket.on('close', () => {
        this.sockets.delete(socket);
        other.destroy(); // one side gone: cut the other too
      });
    }
    upstream.on('data', (chunk: Buffer) => {
      this.bytesFromServer += chunk.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Reset every open connection; return how many sockets were cut. */
  drop(): number {
    const cut = [...this.sockets];
    for (const socket of cut) {
      socket.resetAndDestroy();
    }
    this.sockets.clear();
    return cut.length;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.drop();
    await closed;
  }
}

/** Every item of an async iterable. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) {
    out.push(item);
  }
  return out;
}

/** The events are a whole run: sequences 1..N, RUN_STARTED first, `last` last. */
export function assertWholeRun(events: WorkflowEvent[], last = 'RUN_SUCCEEDED'): void {
  assert.deepEqual(
    events.map((e) => e.sequence),
    events.map((_, i) => i + 1),
  );
  assert.equal(events[0]?.kind, 'RUN_STARTED');
  assert.equal(events.at(-1)?.kind, last);
  assert.equal(
    events.filter((e) => e.kind.startsWith('RUN_') && e.kind !== 'RUN_STARTED').length,
    1,
  );
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A suffix that keeps run ids and labels of one test apart from another's. */
export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
