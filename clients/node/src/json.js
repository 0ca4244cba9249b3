// Conversions between plain JavaScript values and the well-known types the
// contract uses: google.protobuf.Value / Struct (JSON), Timestamp, and int64.

const VALUE_KINDS = ['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'];

/**
 * A google.protobuf.Value (as @grpc/proto-loader expects it) holding `data`.
 * Objects with `toJSON` (such as Date) are converted the way JSON.stringify
 * would; `undefined` becomes JSON null.
 *
 * @param {unknown} data any JSON-compatible value
 * @returns {object}
 */
export function toValue(data) {
  if (data !== null && typeof data === 'object' && typeof data.toJSON === 'function') {
    return toValue(data.toJSON());
  }
  if (data === null || data === undefined) return { nullValue: 'NULL_VALUE' };
  switch (typeof data) {
    case 'number':
      return { numberValue: data };
    case 'string':
      return { stringValue: data };
    case 'boolean':
      return { boolValue: data };
    case 'object':
      if (Array.isArray(data)) return { listValue: { values: data.map(toValue) } };
      return { structValue: toStruct(data) };
    default:
      throw new TypeError(`cannot send a ${typeof data} as JSON`);
  }
}

/**
 * The JavaScript value held by a decoded google.protobuf.Value; an unset
 * value is JSON null, as the contract says.
 *
 * @param {object | null | undefined} value
 * @returns {unknown}
 */
export function fromValue(value) {
  // Decoded messages name the set member in `kind` (the loader's `oneofs`
  // option); values built by toValue have only the member itself.
  const kind = value?.kind ?? VALUE_KINDS.find((member) => value?.[member] !== undefined);
  if (!kind) return null;
  switch (kind) {
    case 'nullValue':
      return null;
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return fromStruct(value.structValue);
    case 'listValue':
      return (value.listValue?.values ?? []).map(fromValue);
    default:
      throw new TypeError(`unknown google.protobuf.Value kind ${kind}`);
  }
}

/**
 * A google.protobuf.Struct holding the plain object `data` (empty if unset).
 *
 * @param {Record<string, unknown> | null | undefined} data
 * @returns {{fields: Record<string, object>}}
 */
export function toStruct(data) {
  if (data === null || data === undefined) return { fields: {} };
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new TypeError('metadata must be a plain JSON object');
  }
  return {
    fields: Object.fromEntries(Object.entries(data).map(([key, item]) => [key, toValue(item)])),
  };
}

/**
 * The plain object held by a decoded google.protobuf.Struct ({} if unset).
 *
 * @param {{fields?: Record<string, object>} | null | undefined} struct
 * @returns {Record<string, unknown>}
 */
export function fromStruct(struct) {
  return Object.fromEntries(
    Object.entries(struct?.fields ?? {}).map(([key, item]) => [key, fromValue(item)]),
  );
}

/**
 * A google.protobuf.Timestamp for a Date (or anything `new Date()` accepts: a
 * number is milliseconds since the epoch), a bigint of nanoseconds since the
 * epoch (as events' `timestampNanos`), or a `{seconds, nanos}` object;
 * undefined when `when` is unset, so the server picks the time.
 *
 * @param {Date | string | number | bigint | {seconds: bigint | number | string, nanos?: number} | null | undefined} when
 * @returns {{seconds: string, nanos: number} | undefined}
 */
export function toTimestamp(when) {
  if (when === null || when === undefined) return undefined;
  if (typeof when === 'bigint') {
    const seconds = floorDivide(when, NANOS_PER_SECOND);
    return { seconds: String(seconds), nanos: Number(when - seconds * NANOS_PER_SECOND) };
  }
  if (typeof when === 'object' && !(when instanceof Date) && 'seconds' in when) {
    const nanos = when.nanos ?? 0;
    if (!Number.isInteger(nanos) || nanos < 0 || nanos >= 1e9) throw new TypeError(`not a time: nanos ${nanos}`);
    return { seconds: toInt64(when.seconds), nanos };
  }
  const millis = new Date(when).getTime();
  if (Number.isNaN(millis)) throw new TypeError(`not a time: ${when}`);
  const seconds = Math.floor(millis / 1000);
  return { seconds: String(seconds), nanos: (millis - seconds * 1000) * 1_000_000 };
}

/**
 * The Date of a decoded google.protobuf.Timestamp (millisecond precision), or
 * null when unset.
 *
 * @param {{seconds: string | number, nanos: number} | null | undefined} timestamp
 * @returns {Date | null}
 */
export function fromTimestamp(timestamp) {
  if (!timestamp) return null;
  return new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1_000_000));
}

/**
 * The nanoseconds since the epoch of a decoded google.protobuf.Timestamp
 * (exact, where a Date keeps milliseconds), or null when unset.
 *
 * @param {{seconds: string | number, nanos: number} | null | undefined} timestamp
 * @returns {bigint | null}
 */
export function fromTimestampNanos(timestamp) {
  if (!timestamp) return null;
  return BigInt(timestamp.seconds) * NANOS_PER_SECOND + BigInt(timestamp.nanos);
}

const NANOS_PER_SECOND = 1_000_000_000n;

// Division rounding toward negative infinity, as Timestamp seconds do.
function floorDivide(dividend, divisor) {
  const quotient = dividend / divisor;
  return dividend % divisor < 0n ? quotient - 1n : quotient;
}

/**
 * An int64 field value for a request: a decimal string, which keeps every
 * digit of cursors past Number.MAX_SAFE_INTEGER.
 *
 * @param {bigint | number | string} value
 * @returns {string}
 */
export function toInt64(value) {
  const text = String(value);
  if (!/^-?\d+$/.test(text)) throw new TypeError(`not an integer: ${value}`);
  return text;
}

/**
 * JSON.stringify that writes bigints (cursors) as JSON numbers while they are
 * safe integers and as decimal strings beyond 2^53, so no digit is lost.
 *
 * @param {unknown} data
 * @returns {string}
 */
export function stringify(data) {
  return JSON.stringify(data, (_key, item) => {
    if (typeof item !== 'bigint') return item;
    const asNumber = Number(item);
    return Number.isSafeInteger(asNumber) ? asNumber : item.toString();
  });
}
