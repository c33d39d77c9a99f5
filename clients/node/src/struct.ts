/**
 * google.protobuf.Struct / Value / ListValue <-> plain JavaScript values, all in one place.
 *
 * The messages have the shape @grpc/proto-loader gives them with `oneofs: true`: a Value
 * names the member it holds in `kind` ("numberValue", "structValue", ...).
 */

/** What a Struct can hold: JSON. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface PbValue {
  kind?: string;
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct | null;
  listValue?: PbListValue | null;
}

export interface PbStruct {
  fields: Record<string, PbValue>;
}

export interface PbListValue {
  values: PbValue[];
}

// ---- JavaScript -> protobuf --------------------------------------------------------------

/** A Struct of `obj`'s fields, converted as JSON.stringify would (Dates become ISO strings,
 * `undefined` fields are left out). */
export function toStruct(obj: object | null | undefined): PbStruct {
  if (obj === null || obj === undefined) {
    return { fields: {} };
  }
  const value = toValue(obj);
  if (value.kind !== 'structValue' || !value.structValue) {
    throw new TypeError(`expected a plain object for a Struct, got ${describe(obj)}`);
  }
  return value.structValue;
}

/** A Value holding `value` (JSON semantics: `undefined` becomes null). */
export function toValue(value: unknown): PbValue {
  return convert(value, new Set(), 'value');
}

function convert(value: unknown, seen: Set<object>, where: string): PbValue {
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  ) {
    value = (value as { toJSON: (key: string) => unknown }).toJSON('');
  }
  switch (typeof value) {
    case 'undefined':
      return { kind: 'nullValue', nullValue: 'NULL_VALUE' };
    case 'boolean':
      return { kind: 'boolValue', boolValue: value };
    case 'number':
      return { kind: 'numberValue', numberValue: value };
    case 'string':
      return { kind: 'stringValue', stringValue: value };
    case 'bigint':
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw new TypeError(`${where}: ${value} does not fit a Struct's numbers (doubles)`);
      }
      return { kind: 'numberValue', numberValue: Number(value) };
    case 'object':
      break;
    default:
      throw new TypeError(`${where}: a ${typeof value} cannot go in a Struct`);
  }
  if (value === null) {
    return { kind: 'nullValue', nullValue: 'NULL_VALUE' };
  }
  if (seen.has(value)) {
    throw new TypeError(`${where}: circular reference`);
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      const values = value.map((item, i) =>
        item === undefined || typeof item === 'function' || typeof item === 'symbol'
          ? { kind: 'nullValue', nullValue: 'NULL_VALUE' }
          : convert(item, seen, `${where}[${i}]`),
      );
      return { kind: 'listValue', listValue: { values } };
    }
    const fields: Record<string, PbValue> = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') {
        continue; // as JSON.stringify does
      }
      fields[key] = convert(item, seen, `${where}.${key}`);
    }
    return { kind: 'structValue', structValue: { fields } };
  } finally {
    seen.delete(value);
  }
}

function describe(value: unknown): string {
  return Array.isArray(value) ? 'an array' : typeof value;
}

// ---- protobuf -> JavaScript --------------------------------------------------------------

/** The plain object a Struct holds ({} for an unset one). */
export function fromStruct(struct: PbStruct | null | undefined): JsonObject {
  const out: JsonObject = {};
  if (struct?.fields) {
    for (const [key, value] of Object.entries(struct.fields)) {
      out[key] = fromValue(value);
    }
  }
  return out;
}

/** The plain value a Value holds (null for an unset one). */
export function fromValue(value: PbValue | null | undefined): JsonValue {
  switch (value?.kind) {
    case 'numberValue':
      return value.numberValue ?? 0;
    case 'stringValue':
      return value.stringValue ?? '';
    case 'boolValue':
      return value.boolValue ?? false;
    case 'structValue':
      return fromStruct(value.structValue);
    case 'listValue':
      return (value.listValue?.values ?? []).map(fromValue);
    default: // nullValue, or nothing set
      return null;
  }
}
