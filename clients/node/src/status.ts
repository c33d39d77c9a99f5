/**
 * Reads the google.rpc.Status the service sends in the `grpc-status-details-bin` trailer of
 * every error: its ErrorInfo, BadRequest and RetryInfo details. These few messages are
 * decoded straight from the protobuf wire format, so the client needs no copy of the
 * google/rpc protos.
 */

import type { Metadata } from '@grpc/grpc-js';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** One bad request field: its path (`input.count`, `data.response`) and what is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** What the status details say; fields are empty when the trailer has no such detail. */
export interface StatusDetails {
  /** The stable error reason, e.g. "RUN_NOT_FOUND" ("" when none was sent). */
  reason: string;
  /** The reason's domain, "workflow.v1". */
  domain: string;
  /** The error's context from the ErrorInfo: run_id, workflow, field, ... */
  errorMetadata: Record<string, string>;
  fieldViolations: FieldViolation[];
  /** Seconds the server asks to wait before retrying, when it says. */
  retryAfter: number | undefined;
}

const TYPE_PREFIX = 'type.googleapis.com/';
const ERROR_INFO = `${TYPE_PREFIX}google.rpc.ErrorInfo`;
const BAD_REQUEST = `${TYPE_PREFIX}google.rpc.BadRequest`;
const RETRY_INFO = `${TYPE_PREFIX}google.rpc.RetryInfo`;

export function emptyDetails(): StatusDetails {
  return { reason: '', domain: '', errorMetadata: {}, fieldViolations: [], retryAfter: undefined };
}

/** The details in `trailers`; empty ones when there are none or they cannot be read (a proxy
 * or another kind of server may send none). */
export function statusDetails(trailers: Metadata | undefined): StatusDetails {
  const details = emptyDetails();
  const raw = trailers?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(raw)) {
    return details;
  }
  try {
    // google.rpc.Status: 1 code, 2 message, 3 repeated google.protobuf.Any details.
    for (const [field, value] of fields(raw)) {
      if (field === 3 && Buffer.isBuffer(value)) {
        readAny(value, details);
      }
    }
  } catch {
    return emptyDetails();
  }
  return details;
}

function readAny(any: Buffer, details: StatusDetails): void {
  let typeUrl = '';
  let body: Buffer = Buffer.alloc(0);
  for (const [field, value] of fields(any)) {
    if (field === 1 && Buffer.isBuffer(value)) typeUrl = value.toString('utf8');
    if (field === 2 && Buffer.isBuffer(value)) body = value;
  }
  if (typeUrl === ERROR_INFO) {
    // reason = 1, domain = 2, map<string, string> metadata = 3 (entries: key 1, value 2).
    for (const [field, value] of fields(body)) {
      if (!Buffer.isBuffer(value)) continue;
      if (field === 1) details.reason = value.toString('utf8');
      if (field === 2) details.domain = value.toString('utf8');
      if (field === 3) {
        const [key, text] = stringPair(value);
        details.errorMetadata[key] = text;
      }
    }
  } else if (typeUrl === BAD_REQUEST) {
    // repeated FieldViolation field_violations = 1 (field 1, description 2).
    for (const [field, value] of fields(body)) {
      if (field === 1 && Buffer.isBuffer(value)) {
        const [name, description] = stringPair(value);
        details.fieldViolations.push({ field: name, description });
      }
    }
  } else if (typeUrl === RETRY_INFO) {
    // google.protobuf.Duration retry_delay = 1 (seconds 1, nanos 2).
    for (const [field, value] of fields(body)) {
      if (field === 1 && Buffer.isBuffer(value)) {
        let seconds = 0;
        let nanos = 0;
        for (const [f, v] of fields(value)) {
          if (f === 1 && typeof v === 'number') seconds = v;
          if (f === 2 && typeof v === 'number') nanos = v;
        }
        details.retryAfter = seconds + nanos / 1e9;
      }
    }
  }
}

function stringPair(message: Buffer): [string, string] {
  let first = '';
  let second = '';
  for (const [field, value] of fields(message)) {
    if (field === 1 && Buffer.isBuffer(value)) first = value.toString('utf8');
    if (field === 2 && Buffer.isBuffer(value)) second = value.toString('utf8');
  }
  return [first, second];
}

/** The fields of one message: varints as numbers, length-delimited fields as Buffers;
 * fixed-width fields are skipped (none of the messages read here has one). */
function* fields(buf: Buffer): Generator<[number, number | Buffer]> {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const byte = buf[pos++];
      result += (byte & 0x7f) * scale; // arithmetic, not bit shifts: values may pass 2^31
      if (byte < 0x80) return result;
      scale *= 128;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) {
      yield [field, varint()];
    } else if (wireType === 2) {
      const length = varint();
      if (pos + length > buf.length) throw new Error('truncated field');
      yield [field, buf.subarray(pos, pos + length)];
      pos += length;
    } else if (wireType === 1) {
      pos += 8;
    } else if (wireType === 5) {
      pos += 4;
    } else {
      throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}
