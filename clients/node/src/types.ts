/** Plain JavaScript views of the service's messages. */

import type { PbDuration, PbRun, PbTimestamp, PbWorkflowEvent, PbWorkflowInfo } from './proto';
import { fromStruct, fromValue } from './struct';
import type { JsonObject, JsonValue } from './struct';

/** A run's lifecycle state: the RunStatus name without its "RUN_STATUS_" prefix. */
export type RunStatus =
  'PENDING' | 'RUNNING' | 'WAITING_FOR_INPUT' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'TIMED_OUT';

/** What an event reports: the EventKind name without its "EVENT_KIND_" prefix. */
export type EventKind =
  | 'RUN_STARTED'
  | 'STEP_STARTED'
  | 'STEP_FINISHED'
  | 'STREAM'
  | 'INPUT_REQUIRED'
  | 'RUN_SUCCEEDED'
  | 'RUN_FAILED'
  | 'RUN_CANCELLED'
  | 'RUN_TIMED_OUT';

export const TERMINAL_KINDS: ReadonlySet<string> = new Set([
  'RUN_SUCCEEDED',
  'RUN_FAILED',
  'RUN_CANCELLED',
  'RUN_TIMED_OUT',
]);

export const ENDED_STATUSES: ReadonlySet<string> = new Set([
  'SUCCEEDED',
  'FAILED',
  'CANCELLED',
  'TIMED_OUT',
]);

export interface RunErrorInfo {
  type: string;
  message: string;
  step: string;
}

export interface Run {
  runId: string;
  workflow: string;
  status: RunStatus;
  input: JsonObject;
  /** The result once it succeeded, else null. */
  result: JsonValue;
  error: RunErrorInfo | null;
  createdAt: Date | null;
  startedAt: Date | null;
  endedAt: Date | null;
  lastSequence: number;
  labels: Record<string, string>;
  /** The longest the run may take, in milliseconds; null when it has no limit. */
  timeoutMs: number | null;
}

export interface WorkflowEvent {
  runId: string;
  /** 1, 2, 3... with no gap. */
  sequence: number;
  kind: EventKind;
  /** Class name of the workflow event concerned ("" when there is none). */
  type: string;
  /** The step concerned ("" for run-level events). */
  step: string;
  data: JsonObject;
  time: Date;
}

export interface WorkflowInfo {
  name: string;
  description: string;
  inputSchema: JsonObject;
  /** Event type -> JSON Schema of its data, for the events sendEvent accepts. */
  acceptedEvents: Record<string, JsonObject>;
  steps: string[];
}

/** Whether the run has ended (succeeded, failed, was cancelled or timed out). */
export function isEnded(run: Pick<Run, 'status'>): boolean {
  return ENDED_STATUSES.has(run.status);
}

/** Whether the event is the run's last (RUN_SUCCEEDED, RUN_FAILED, ...). */
export function isTerminal(event: Pick<WorkflowEvent, 'kind'>): boolean {
  return TERMINAL_KINDS.has(event.kind);
}

// ---- conversions from the messages ---------------------------------------------------------

export const RUN_STATUS_PREFIX = 'RUN_STATUS_';
export const EVENT_KIND_PREFIX = 'EVENT_KIND_';

function unprefix(name: string, prefix: string): string {
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

export function dateFromPb(ts: PbTimestamp | null | undefined): Date | null {
  if (!ts) {
    return null;
  }
  return new Date(Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1e6));
}

export function durationToPb(ms: number): PbDuration {
  const seconds = Math.trunc(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export function durationFromPb(d: PbDuration | null | undefined): number | null {
  if (!d) {
    return null;
  }
  return Number(d.seconds) * 1000 + Number(d.nanos) / 1e6;
}

export function runFromPb(m: PbRun): Run {
  return {
    runId: m.runId,
    workflow: m.workflow,
    status: unprefix(m.status, RUN_STATUS_PREFIX) as RunStatus,
    input: fromStruct(m.input),
    result: m.result ? fromValue(m.result) : null,
    error: m.error ? { type: m.error.type, message: m.error.message, step: m.error.step } : null,
    createdAt: dateFromPb(m.createdAt),
    startedAt: dateFromPb(m.startedAt),
    endedAt: dateFromPb(m.endedAt),
    lastSequence: Number(m.lastSequence),
    labels: { ...m.labels },
    timeoutMs: durationFromPb(m.timeout),
  };
}

export function eventFromPb(m: PbWorkflowEvent): WorkflowEvent {
  return {
    runId: m.runId,
    sequence: Number(m.sequence),
    kind: unprefix(m.kind, EVENT_KIND_PREFIX) as EventKind,
    type: m.type,
    step: m.step,
    data: fromStruct(m.data),
    time: dateFromPb(m.time) ?? new Date(0),
  };
}

export function workflowFromPb(m: PbWorkflowInfo): WorkflowInfo {
  const acceptedEvents: Record<string, JsonObject> = {};
  for (const e of m.acceptedEvents) {
    acceptedEvents[e.type] = fromStruct(e.schema);
  }
  return {
    name: m.name,
    description: m.description,
    inputSchema: fromStruct(m.inputSchema),
    acceptedEvents,
    steps: [...m.steps],
  };
}
