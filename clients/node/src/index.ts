/** Node.js client for workflow.v1.WorkflowService. */

export {
  CHANNEL_OPTIONS,
  DEFAULT_ADDRESS,
  MAX_MESSAGE_BYTES,
  RunHandle,
  WorkflowClient,
  newRunId,
} from './client';
export type {
  ClientOptions,
  EventsOptions,
  ListRunsOptions,
  RunOptions,
  TlsOptions,
} from './client';
export {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  RunCancelledError,
  RunError,
  RunFailedError,
  RunTimedOutError,
  UnauthenticatedError,
  UnavailableError,
  WorkflowServiceError,
  errorFromStatus,
  mapError,
  resultOf,
} from './errors';
export { DEFAULT_PROTO_DIR, PROTO_FILE, loadProto } from './proto';
export { STATUS_DETAILS_KEY, statusDetails } from './status';
export type { FieldViolation, StatusDetails } from './status';
export { fromStruct, fromValue, toStruct, toValue } from './struct';
export type { JsonObject, JsonValue } from './struct';
export { ENDED_STATUSES, TERMINAL_KINDS, isEnded, isTerminal } from './types';
export type { EventKind, Run, RunErrorInfo, RunStatus, WorkflowEvent, WorkflowInfo } from './types';
export { status } from '@grpc/grpc-js';
