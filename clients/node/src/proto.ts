/**
 * Loads the contract, protos/workflow/v1/workflow.proto, at run time with
 * @grpc/proto-loader: the repository's protos/ directory stays the only copy of it.
 *
 * The interfaces below describe the messages as proto-loader hands them over with
 * LOADER_OPTIONS (camelCase fields, enums as their names, int64 as numbers, defaults filled
 * in, the name of the set oneof member in a virtual field). They are for the compiler only:
 * the wire format comes from the .proto file.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { PbStruct, PbValue } from './struct';

export const PROTO_FILE = 'workflow/v1/workflow.proto';

/** The repository's protos/ directory; this file runs from clients/node/dist/src/. */
export const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', '..', '..', 'protos');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number, // sequences and timestamps fit a double's 53 bits
  enums: String,
  defaults: true,
  oneofs: true,
};

// ---- messages, as proto-loader represents them --------------------------------------------

export interface PbTimestamp {
  seconds: number;
  nanos: number;
}

export interface PbDuration {
  seconds: number;
  nanos: number;
}

export interface PbRunWorkflowRequest {
  workflow: string;
  input: PbStruct;
  runId: string;
  wait: boolean;
  timeout?: PbDuration | null;
  labels: Record<string, string>;
}

export interface PbStreamEventsRequest {
  runId?: string;
  start?: PbRunWorkflowRequest;
  afterSequence: number;
  kinds: string[];
}

export interface PbWorkflowEvent {
  runId: string;
  sequence: number;
  kind: string;
  type: string;
  step: string;
  data: PbStruct | null;
  time: PbTimestamp | null;
}

export interface PbRunError {
  type: string;
  message: string;
  step: string;
}

export interface PbRun {
  runId: string;
  workflow: string;
  status: string;
  input: PbStruct | null;
  result: PbValue | null;
  error: PbRunError | null;
  createdAt: PbTimestamp | null;
  startedAt: PbTimestamp | null;
  endedAt: PbTimestamp | null;
  lastSequence: number;
  labels: Record<string, string>;
  timeout: PbDuration | null;
}

export interface PbWorkflowInfo {
  name: string;
  description: string;
  inputSchema: PbStruct | null;
  acceptedEvents: { type: string; schema: PbStruct | null }[];
  steps: string[];
}

export interface PbListRunsRequest {
  workflow: string;
  statuses: string[];
  labels: Record<string, string>;
  pageSize: number;
  pageToken: string;
}

export interface PbRunResponse {
  run: PbRun;
}

export interface PbListWorkflowsResponse {
  workflows: PbWorkflowInfo[];
}

export interface PbListRunsResponse {
  runs: PbRun[];
  nextPageToken: string;
}

// ---- the service stub ----------------------------------------------------------------------

export type Callback<Res> = (error: grpc.ServiceError | null, response?: Res) => void;

export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: Callback<Res>,
) => grpc.ClientUnaryCall;

export interface WorkflowServiceStub extends grpc.Client {
  RunWorkflow: UnaryMethod<PbRunWorkflowRequest, PbRunResponse>;
  StreamEvents(
    request: PbStreamEventsRequest,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<PbWorkflowEvent>;
  GetRun: UnaryMethod<{ runId: string }, PbRunResponse>;
  CancelRun: UnaryMethod<{ runId: string }, PbRunResponse>;
  SendEvent: UnaryMethod<{ runId: string; type: string; data: PbStruct }, PbRunResponse>;
  ListWorkflows: UnaryMethod<Record<string, never>, PbListWorkflowsResponse>;
  ListRuns: UnaryMethod<PbListRunsRequest, PbListRunsResponse>;
}

export interface WorkflowServiceStubConstructor {
  new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions,
  ): WorkflowServiceStub;
}

export interface LoadedProto {
  /** The generated client class for workflow.v1.WorkflowService. */
  WorkflowService: WorkflowServiceStubConstructor;
  /** Enum value names, e.g. "EVENT_KIND_STREAM", as the .proto declares them. */
  eventKinds: ReadonlySet<string>;
  runStatuses: ReadonlySet<string>;
}

const loaded = new Map<string, LoadedProto>();

/** The service and enums of workflow.proto under `protoDir` (default: $WORKFLOW_PROTO_DIR,
 * else the repository's protos/), loaded once per directory. */
export function loadProto(protoDir?: string): LoadedProto {
  const dir = path.resolve(protoDir || process.env.WORKFLOW_PROTO_DIR || DEFAULT_PROTO_DIR);
  const cached = loaded.get(dir);
  if (cached) {
    return cached;
  }
  if (!fs.existsSync(path.join(dir, PROTO_FILE))) {
    throw new Error(
      `cannot find ${PROTO_FILE} under ${dir}; pass the repository's protos/ directory as ` +
        'the protoDir option (or set WORKFLOW_PROTO_DIR)',
    );
  }
  const definition = protoLoader.loadSync(PROTO_FILE, { ...LOADER_OPTIONS, includeDirs: [dir] });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    workflow: { v1: { WorkflowService: WorkflowServiceStubConstructor } };
  };
  const enumNames = (name: string): ReadonlySet<string> => {
    const def = definition[name] as protoLoader.EnumTypeDefinition;
    const values = (def.type as { value: { name: string }[] }).value;
    return new Set(values.map((v) => v.name));
  };
  const proto: LoadedProto = {
    WorkflowService: pkg.workflow.v1.WorkflowService,
    eventKinds: enumNames('workflow.v1.EventKind'),
    runStatuses: enumNames('workflow.v1.RunStatus'),
  };
  loaded.set(dir, proto);
  return proto;
}
