/** The client: WorkflowClient, and RunHandle for one run. */

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import {
  UnavailableError,
  WorkflowServiceError,
  isServiceError,
  mapError,
  resultOf,
} from './errors';
import { loadProto } from './proto';
import type {
  LoadedProto,
  PbRunWorkflowRequest,
  PbStreamEventsRequest,
  UnaryMethod,
  WorkflowServiceStub,
} from './proto';
import { toStruct } from './struct';
import type { JsonValue } from './struct';
import {
  EVENT_KIND_PREFIX,
  RUN_STATUS_PREFIX,
  durationToPb,
  eventFromPb,
  isEnded,
  isTerminal,
  runFromPb,
  workflowFromPb,
} from './types';
import type { EventKind, Run, RunStatus, WorkflowEvent, WorkflowInfo } from './types';

export const DEFAULT_ADDRESS = '127.0.0.1:50051';
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** The same channel settings as the Python client: 16 MiB messages, keepalive pings every
 * 30 s (10 s timeout), which the server permits. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
};

/** The most a server's RetryInfo can make a retry wait, in seconds. */
const MAX_RETRY_AFTER_S = 30;

/** Failures worth reconnecting for: the connection dropped or the server restarted. */
const RETRYABLE: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.INTERNAL,
]);

export interface ClientOptions {
  /** How many times in a row a call that failed UNAVAILABLE is retried (default 10). */
  reconnectAttempts?: number;
  /** Pause before the n-th retry: n times this (default 200 ms). */
  reconnectDelayMs?: number;
  /** Sent as `authorization: Bearer <token>` with every call, resumed streams included. */
  token?: string;
  /** TLS: `true` trusts the system's CAs; or PEM buffers: `rootCerts` to trust instead,
   * `clientCert` and `clientKey` for servers that require client certificates. */
  tls?: boolean | TlsOptions;
  /** Channel credentials as they are (overrides `tls`). Default: plaintext. */
  credentials?: grpc.ChannelCredentials;
  /** Merged over CHANNEL_OPTIONS. */
  channelOptions?: grpc.ChannelOptions;
  /** Directory holding workflow/v1/workflow.proto (default: $WORKFLOW_PROTO_DIR, else the
   * repository's protos/). */
  protoDir?: string;
}

export interface TlsOptions {
  rootCerts?: Buffer;
  clientCert?: Buffer;
  clientKey?: Buffer;
}

/** Channel credentials for the `tls` option. */
function channelCredentials(tls: boolean | TlsOptions | undefined): grpc.ChannelCredentials {
  if (!tls) {
    return grpc.credentials.createInsecure();
  }
  const { rootCerts, clientCert, clientKey } = tls === true ? ({} as TlsOptions) : tls;
  if (!clientCert !== !clientKey) {
    throw new TypeError('tls: give both clientCert and clientKey (PEM), or neither');
  }
  return grpc.credentials.createSsl(rootCerts ?? null, clientKey ?? null, clientCert ?? null);
}

/** Call metadata carrying the token (empty without one). */
function bearerMetadata(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) {
    const trimmed = token.trim();
    if (!trimmed || /\s/.test(trimmed)) {
      throw new TypeError("token: expected one non-empty word (the token, without 'Bearer')");
    }
    metadata.set('authorization', `Bearer ${trimmed}`);
  }
  return metadata;
}

export interface RunOptions {
  /** Client-chosen run id; asking again with the same id, workflow and input finds the same
   * run instead of starting another. */
  runId?: string;
  /** Longest the run may take (unset: the server's default). */
  timeoutMs?: number;
  /** Free-form labels, for filtering in listRuns. */
  labels?: Record<string, string>;
}

export interface EventsOptions {
  /** Only events with a greater sequence (default 0: every event). */
  after?: number;
  /** Only events of these kinds (default: all); the terminal event always comes. */
  kinds?: Iterable<EventKind | string>;
}

export interface ListRunsOptions {
  workflow?: string;
  statuses?: Iterable<RunStatus | string>;
  /** Only runs carrying every one of these labels with exactly these values. */
  labels?: Record<string, string>;
  /** Runs fetched per request (default 100, at most 1000). */
  pageSize?: number;
}

/**
 * A fresh run id, in the same form as the Python client's: a UUIDv7 (RFC 9562) as 32 hex
 * digits, the time in milliseconds then 74 random bits. Later ids sort later, which keeps
 * the server's run index appending at its end.
 */
export function newRunId(): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(Date.now(), 0, 6);
  bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // the RFC's variant
  return bytes.toString('hex');
}

/**
 * Client for workflow.v1.WorkflowService.
 *
 * ```ts
 * const client = new WorkflowClient('127.0.0.1:50051');
 * console.log(await client.run('echo', { message: 'hi' }));   // "hi"
 * client.close();
 * ```
 */
export class WorkflowClient {
  /** The grpc-js stub, for calls this class does not wrap. */
  readonly stub: WorkflowServiceStub;
  readonly reconnectAttempts: number;
  readonly reconnectDelayMs: number;
  private readonly proto: LoadedProto;
  private readonly metadata: grpc.Metadata;

  constructor(address: string = DEFAULT_ADDRESS, options: ClientOptions = {}) {
    this.proto = loadProto(options.protoDir);
    this.metadata = bearerMetadata(options.token);
    this.stub = new this.proto.WorkflowService(
      address,
      options.credentials ?? channelCredentials(options.tls),
      { ...CHANNEL_OPTIONS, ...options.channelOptions },
    );
    this.reconnectAttempts = options.reconnectAttempts ?? 10;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 200;
  }

  /** Close the channel: calls in progress go on to their end; new calls throw. */
  close(): void {
    this.stub.close();
  }

  /**
   * Run a workflow to its end and return its result; a run that did not succeed throws
   * RunFailedError, RunCancelledError or RunTimedOutError.
   *
   * The run gets a client-chosen id, so when the connection drops while waiting the call
   * is retried without starting a second run.
   */
  async run(workflow: string, input: object = {}, options: RunOptions = {}): Promise<JsonValue> {
    const request = this.request(workflow, input, options.runId || newRunId(), options, true);
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.unary(this.stub.RunWorkflow, request);
        return resultOf(runFromPb(response.run)) as JsonValue;
      } catch (e) {
        if (
          !(e instanceof WorkflowServiceError) ||
          !RETRYABLE.has(e.code) ||
          attempt >= this.reconnectAttempts
        ) {
          throw e;
        }
        await sleep(this.backoffMs(attempt + 1, e));
      }
    }
  }

  /** Start a run and return its handle at once. */
  async start(workflow: string, input: object = {}, options: RunOptions = {}): Promise<RunHandle> {
    const request = this.request(workflow, input, options.runId ?? '', options, false);
    const response = await this.unary(this.stub.RunWorkflow, request);
    return new RunHandle(this, response.run.runId);
  }

  /** A handle whose first `events()` starts the run and streams it in the same call (one
   * round trip; no event can be missed). */
  stream(workflow: string, input: object = {}, options: RunOptions = {}): RunHandle {
    const request = this.request(workflow, input, options.runId || newRunId(), options, false);
    return new RunHandle(this, request.runId, request);
  }

  /** A handle on an existing run. */
  handle(runId: string): RunHandle {
    return new RunHandle(this, runId);
  }

  async getRun(runId: string): Promise<Run> {
    return runFromPb((await this.unary(this.stub.GetRun, { runId })).run);
  }

  async cancel(runId: string): Promise<Run> {
    return runFromPb((await this.unary(this.stub.CancelRun, { runId })).run);
  }

  /** Send an event the workflow accepts from outside (see listWorkflows) into a run. */
  async sendEvent(runId: string, type: string, data: object = {}): Promise<Run> {
    const request = { runId, type, data: toStruct(data) };
    return runFromPb((await this.unary(this.stub.SendEvent, request)).run);
  }

  async listWorkflows(): Promise<WorkflowInfo[]> {
    return (await this.unary(this.stub.ListWorkflows, {})).workflows.map(workflowFromPb);
  }

  /** Every matching run, newest first, fetched page by page. */
  async *listRuns(options: ListRunsOptions = {}): AsyncGenerator<Run, void, undefined> {
    const statuses = this.enumNames(options.statuses, RUN_STATUS_PREFIX, this.proto.runStatuses);
    let pageToken = '';
    for (;;) {
      const response = await this.unary(this.stub.ListRuns, {
        workflow: options.workflow ?? '',
        statuses,
        labels: options.labels ?? {},
        pageSize: options.pageSize ?? 100,
        pageToken,
      });
      for (const run of response.runs) {
        yield runFromPb(run);
      }
      pageToken = response.nextPageToken;
      if (!pageToken) {
        return;
      }
    }
  }

  /** @internal The events behind RunHandle.events(). */
  async *_events(
    runId: string,
    after: number,
    kinds: Iterable<string> | undefined,
    start: PbRunWorkflowRequest | undefined,
  ): AsyncGenerator<WorkflowEvent, void, undefined> {
    const kindNames = this.enumNames(kinds, EVENT_KIND_PREFIX, this.proto.eventKinds);
    let failures = 0;
    for (;;) {
      const request: PbStreamEventsRequest = start
        ? { start, afterSequence: after, kinds: kindNames }
        : { runId, afterSequence: after, kinds: kindNames };
      const call = this.stub.StreamEvents(request, this.metadata.clone());
      let interruption: unknown;
      try {
        for await (const message of messages(call)) {
          start = undefined; // the run exists now: reconnect by its id
          failures = 0;
          const event = eventFromPb(message);
          after = event.sequence;
          yield event;
          if (isTerminal(event)) {
            return;
          }
        }
        // Closed without a terminal event: either the run had ended at or before `after`,
        // so nothing was left to send, or the server went away between events.
        if (await this.endedBy(runId, after)) {
          return;
        }
        interruption = new UnavailableError(
          grpc.status.UNAVAILABLE,
          "the event stream kept closing before the run's terminal event",
        );
      } catch (e) {
        if (!isServiceError(e) || !RETRYABLE.has(e.code)) {
          throw mapError(e);
        }
        interruption = e;
      } finally {
        // The caller stopped early (break, return, throw): end the call rather than leave
        // the server streaming into it. A no-op once the call is over.
        call.cancel();
      }
      failures += 1;
      if (failures > this.reconnectAttempts) {
        throw mapError(interruption);
      }
      await sleep(this.backoffMs(failures, interruption));
    }
  }

  /**
   * Milliseconds to wait before retry `attempt` (1, 2, ...): growing with each attempt, and
   * never shorter than the server's RetryInfo asks (a restarting server says how long it
   * needs), up to MAX_RETRY_AFTER_S.
   */
  private backoffMs(attempt: number, error: unknown): number {
    const delay = this.reconnectDelayMs * attempt;
    const mapped = mapError(error);
    const asked = mapped instanceof WorkflowServiceError ? mapped.retryAfter : undefined;
    if (asked === undefined) {
      return delay;
    }
    return Math.max(delay, Math.min(asked, MAX_RETRY_AFTER_S) * 1000);
  }

  /** Whether the run has ended with its last event at or before `sequence`. */
  private async endedBy(runId: string, sequence: number): Promise<boolean> {
    let run: Run;
    try {
      run = await this.getRun(runId);
    } catch {
      return false; // cannot tell; the caller retries the stream
    }
    return isEnded(run) && run.lastSequence <= sequence;
  }

  private request(
    workflow: string,
    input: object,
    runId: string,
    options: RunOptions,
    wait: boolean,
  ): PbRunWorkflowRequest {
    return {
      workflow,
      input: toStruct(input),
      runId,
      wait,
      timeout: options.timeoutMs == null ? null : durationToPb(options.timeoutMs),
      labels: options.labels ?? {},
    };
  }

  /** "STREAM" -> "EVENT_KIND_STREAM", checked against the enum the .proto declares. */
  private enumNames(
    names: Iterable<string> | undefined,
    prefix: string,
    known: ReadonlySet<string>,
  ): string[] {
    const out: string[] = [];
    for (const name of names ?? []) {
      const upper = name.toUpperCase();
      const full = upper.startsWith(prefix) ? upper : prefix + upper;
      if (!known.has(full) || full.endsWith('_UNSPECIFIED')) {
        const choices = [...known]
          .filter((k) => !k.endsWith('_UNSPECIFIED'))
          .map((k) => k.slice(prefix.length));
        const what = prefix.slice(0, -1).toLowerCase().replace('_', ' ');
        throw new TypeError(`unknown ${what} '${name}'; use one of ${choices.join(', ')}`);
      }
      out.push(full);
    }
    return out;
  }

  private unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      method.call(this.stub, request, this.metadata.clone(), {}, (error, response) => {
        if (error) {
          reject(mapError(error));
        } else {
          resolve(response as Res);
        }
      });
    });
  }
}

/** One run: its events, its result, and control. */
export class RunHandle {
  readonly client: WorkflowClient;
  readonly runId: string;
  private start: PbRunWorkflowRequest | undefined;

  constructor(client: WorkflowClient, runId: string, start?: PbRunWorkflowRequest) {
    this.client = client;
    this.runId = runId;
    this.start = start;
  }

  /**
   * The run's events after sequence `after`, live until its terminal event.
   *
   * When the connection drops (UNAVAILABLE) or the stream closes before the terminal event,
   * it reconnects and resumes after the last event it yielded: no event is missed or
   * repeated. Leaving the loop early cancels the call.
   */
  events(options: EventsOptions = {}): AsyncGenerator<WorkflowEvent, void, undefined> {
    const start = this.start;
    this.start = undefined;
    return this.client._events(this.runId, options.after ?? 0, options.kinds, start);
  }

  /** Wait for the run to end; return its result or throw its RunError. */
  async result(): Promise<JsonValue> {
    for await (const _ of this.events({ kinds: ['RUN_SUCCEEDED'] })) {
      // only the terminal event comes through this filter
    }
    return resultOf(await this.get()) as JsonValue;
  }

  get(): Promise<Run> {
    return this.client.getRun(this.runId);
  }

  cancel(): Promise<Run> {
    return this.client.cancel(this.runId);
  }

  sendEvent(type: string, data: object = {}): Promise<Run> {
    return this.client.sendEvent(this.runId, type, data);
  }
}

// ---- a server stream as an async iterable --------------------------------------------------

const HIGH_WATER = 64;

/**
 * The messages of a server-streaming call, then its error if it did not end OK.
 *
 * Listeners stay attached to the end, so an error grpc-js emits after the consumer has
 * stopped (e.g. CANCELLED after break) is never unhandled; the call is paused while
 * HIGH_WATER messages wait, so a slow consumer holds the server back through HTTP/2 flow
 * control instead of buffering without bound.
 */
async function* messages<T>(
  call: grpc.ClientReadableStream<T>,
): AsyncGenerator<T, void, undefined> {
  const queue: T[] = [];
  let failure: unknown = undefined;
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  call.on('data', (message: T) => {
    queue.push(message);
    if (queue.length >= HIGH_WATER && failure === undefined) {
      call.pause();
    }
    notify();
  });
  call.on('error', (e: unknown) => {
    failure ??= e;
    call.resume(); // let what was already received flow out, then 'end'
    notify();
  });
  const finish = (): void => {
    ended = true;
    notify();
  };
  call.on('end', finish);
  call.on('close', finish);
  try {
    for (;;) {
      if (queue.length > 0) {
        const message = queue.shift() as T;
        if (queue.length === 0 && call.isPaused()) {
          call.resume();
        }
        yield message;
      } else if (ended) {
        if (failure !== undefined) {
          throw failure;
        }
        return;
      } else {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
  } finally {
    call.cancel();
  }
}
