/** Typed errors, and the one place that turns gRPC status codes into them. */

import { Metadata, status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { statusDetails } from './status';
import type { FieldViolation } from './status';
import type { Run } from './types';

/** The service answered with an error status (or could not be reached). */
export class WorkflowServiceError extends Error {
  /** The gRPC status code (`status.NOT_FOUND`, ...). */
  readonly code: status;
  /** The server's message, e.g. naming the field that is wrong. */
  readonly details: string;
  /** Trailing metadata of the failed call, when there was a call. */
  readonly metadata: Metadata;
  /** The service's stable error reason, e.g. "RUN_NOT_FOUND" ("" when the error did not
   * come from the service); the README lists them. */
  readonly reason: string;
  /** The reason's domain, "workflow.v1". */
  readonly domain: string;
  /** The error's context: run_id, workflow, field, ... */
  readonly errorMetadata: Record<string, string>;
  /** Each bad request field, e.g. { field: "input.count", description: "..." }. */
  readonly fieldViolations: FieldViolation[];
  /** Seconds the server asks to wait before retrying, when it says. */
  readonly retryAfter: number | undefined;

  constructor(code: status, details: string, options?: { cause?: unknown; metadata?: Metadata }) {
    super(`${status[code] ?? code}: ${details}`, { cause: options?.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = details;
    this.metadata = options?.metadata ?? new Metadata();
    const rich = statusDetails(this.metadata);
    this.reason = rich.reason;
    this.domain = rich.domain;
    this.errorMetadata = rich.errorMetadata;
    this.fieldViolations = rich.fieldViolations;
    this.retryAfter = rich.retryAfter;
  }

  /** The status code's name, e.g. "NOT_FOUND". */
  get codeName(): string {
    return status[this.code] ?? String(this.code);
  }
}

/** The request was malformed; `details` says which field and why. */
export class InvalidArgumentError extends WorkflowServiceError {}

/** No such workflow or run. */
export class NotFoundError extends WorkflowServiceError {}

/** The run id names a run with a different workflow or input. */
export class AlreadyExistsError extends WorkflowServiceError {}

/** The run is not in a state that allows the call (e.g. it has ended). */
export class FailedPreconditionError extends WorkflowServiceError {}

/** The server is at a limit; retry later. */
export class ResourceExhaustedError extends WorkflowServiceError {}

/** The server could not be reached or is shutting down. */
export class UnavailableError extends WorkflowServiceError {}

/** The call's deadline passed (a run being waited for goes on). */
export class DeadlineExceededError extends WorkflowServiceError {}

/** No valid credentials. */
export class UnauthenticatedError extends WorkflowServiceError {}

/** The credentials do not allow this call. */
export class PermissionDeniedError extends WorkflowServiceError {}

type ErrorClass = new (
  code: status,
  details: string,
  options?: { cause?: unknown; metadata?: Metadata },
) => WorkflowServiceError;

const BY_CODE: ReadonlyMap<status, ErrorClass> = new Map<status, ErrorClass>([
  [status.INVALID_ARGUMENT, InvalidArgumentError],
  [status.NOT_FOUND, NotFoundError],
  [status.ALREADY_EXISTS, AlreadyExistsError],
  [status.FAILED_PRECONDITION, FailedPreconditionError],
  [status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  [status.UNAVAILABLE, UnavailableError],
  [status.DEADLINE_EXCEEDED, DeadlineExceededError],
  [status.UNAUTHENTICATED, UnauthenticatedError],
  [status.PERMISSION_DENIED, PermissionDeniedError],
]);

/** The typed error for a status code (WorkflowServiceError for codes without their own). */
export function errorFromStatus(
  code: status,
  details: string,
  options?: { cause?: unknown; metadata?: Metadata },
): WorkflowServiceError {
  const Cls = BY_CODE.get(code) ?? WorkflowServiceError;
  return new Cls(code, details, options);
}

/** Whether `e` is the error grpc-js reports a failed call with. */
export function isServiceError(e: unknown): e is ServiceError {
  return (
    e instanceof Error &&
    typeof (e as Partial<ServiceError>).code === 'number' &&
    typeof (e as Partial<ServiceError>).details === 'string' &&
    (e as Partial<ServiceError>).metadata instanceof Metadata
  );
}

/** A grpc-js call error as its typed error; anything else unchanged. */
export function mapError(e: unknown): unknown {
  if (e instanceof WorkflowServiceError || !isServiceError(e)) {
    return e;
  }
  return errorFromStatus(e.code, e.details, { cause: e, metadata: e.metadata });
}

/** A run ended without a result; `run` holds its final state. */
export class RunError extends Error {
  readonly run: Run;

  constructor(run: Run) {
    const what = run.error ? `${run.error.type}: ${run.error.message}` : run.status;
    super(`run ${run.runId} (${run.workflow}) ended ${run.status}: ${what}`);
    this.name = new.target.name;
    this.run = run;
  }
}

/** A step failed (`run.error.step` says which) or the run could not go on. */
export class RunFailedError extends RunError {}

/** The run was cancelled. */
export class RunCancelledError extends RunError {}

/** The run exceeded its timeout. */
export class RunTimedOutError extends RunError {}

const RUN_ERRORS: ReadonlyMap<string, new (run: Run) => RunError> = new Map([
  ['FAILED', RunFailedError],
  ['CANCELLED', RunCancelledError],
  ['TIMED_OUT', RunTimedOutError],
]);

/** The run's result, or its ending thrown as a RunError. */
export function resultOf(run: Run): unknown {
  const Cls = RUN_ERRORS.get(run.status);
  if (Cls) {
    throw new Cls(run);
  }
  return run.result;
}
