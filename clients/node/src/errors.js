// Decodes the google.rpc.Status that every failed SSSN call carries in its
// trailers (`grpc-status-details-bin`) into an SSSNError with the reason.

import { status as Status } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

import { GOOGLE_RPC_PROTOS_DIR } from './contract.js';

/** The trailer holding the serialized google.rpc.Status of a failed call. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** The `domain` of every ErrorInfo the SSSN server sends. */
export const ERROR_DOMAIN = 'sssn.dev';

const TYPE_URL_PREFIX = 'type.googleapis.com/';

let rpcTypes;

// google/rpc/status.proto and error_details.proto, vendored beside this
// package; their google/protobuf imports are bundled with protobufjs.
function googleRpc() {
  if (!rpcTypes) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => `${GOOGLE_RPC_PROTOS_DIR}/${target}`;
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], {
      keepCase: true,
    });
    root.resolveAll();
    rpcTypes = { root, status: root.lookupType('google.rpc.Status') };
  }
  return rpcTypes;
}

/**
 * Decodes the rich status of a failed gRPC call.
 *
 * @param {import('@grpc/grpc-js').ServiceError} error what grpc-js rejected or emitted
 * @returns {{code: number, message: string, details: Array<{type: string, value: object | null}>} | null}
 *   the google.rpc.Status with each detail unpacked into a plain object with
 *   the proto's field names (`type` is the full message name, such as
 *   `google.rpc.ErrorInfo`; `value` is null for a type this package does not
 *   know), or null when the call carried none (for example a connection
 *   failure reported by the client itself)
 */
export function decodeStatus(error) {
  const [bytes] = error?.metadata?.get?.(STATUS_DETAILS_KEY) ?? [];
  if (!bytes) return null;
  const decoded = googleRpc().status.decode(bytes);
  return { code: decoded.code, message: decoded.message, details: unpack(decoded.details) };
}

// Each google.protobuf.Any of a status as {type, value}; `typeUrl` is how
// @grpc/proto-loader spells the field, `type_url` how protobufjs does.
function unpack(anys) {
  const { root } = googleRpc();
  return anys.map((any) => {
    const url = any.type_url ?? any.typeUrl ?? '';
    const type = url.slice(url.lastIndexOf('/') + 1);
    const messageType = url.startsWith(TYPE_URL_PREFIX) ? root.lookup(type) : null;
    if (!(messageType instanceof protobuf.Type)) return { type, value: null };
    const value = messageType.toObject(messageType.decode(any.value), {
      defaults: true,
      arrays: true,
      objects: true,
    });
    return { type, value };
  });
}

/**
 * The SSSNError of one event an `AppendEventStream` refused (its
 * `AppendError`, which has the fields of a google.rpc.Status).
 *
 * @param {{code: number, message: string, details: Array<{typeUrl: string, value: Uint8Array}>}} appendError
 * @returns {SSSNError}
 */
export function fromAppendError(appendError) {
  return fromDecoded(appendError.code, {
    message: appendError.message,
    details: unpack(appendError.details ?? []),
  });
}

function fromDecoded(code, decoded, cause) {
  const info = decoded?.details.find((detail) => detail.type === 'google.rpc.ErrorInfo')?.value;
  const badRequest = decoded?.details.find((detail) => detail.type === 'google.rpc.BadRequest')?.value;
  return new SSSNError({
    code,
    message: decoded?.message,
    reason: info?.reason ?? '',
    domain: info?.domain ?? '',
    metadata: { ...(info?.metadata ?? {}) },
    fieldViolations: (badRequest?.field_violations ?? []).map(({ field, description }) => ({
      field,
      description,
    })),
    cause,
  });
}

/** A failed SSSN call: its gRPC status and the ErrorInfo / BadRequest details. */
export class SSSNError extends Error {
  /**
   * @param {object} fields
   * @param {number} fields.code gRPC status code (`status.NOT_FOUND`, ...)
   * @param {string} fields.message the server's message
   * @param {string} [fields.reason] ErrorInfo reason, an ErrorReason name
   *   without its prefix (`CHANNEL_NOT_FOUND`); empty when the call failed
   *   before reaching the server
   * @param {string} [fields.domain] ErrorInfo domain (`sssn.dev`)
   * @param {Record<string, string>} [fields.metadata] the offending resource
   * @param {Array<{field: string, description: string}>} [fields.fieldViolations]
   *   BadRequest violations, for INVALID_ARGUMENT
   * @param {Error} [fields.cause] the grpc-js error
   */
  constructor({ code, message, reason = '', domain = '', metadata = {}, fieldViolations = [], cause }) {
    super(message, cause ? { cause } : undefined);
    this.name = 'SSSNError';
    this.code = code;
    this.reason = reason;
    this.domain = domain;
    this.metadata = metadata;
    this.fieldViolations = fieldViolations;
  }

  /** The status code's name, such as `NOT_FOUND`. */
  get codeName() {
    return Status[this.code] ?? String(this.code);
  }

  toString() {
    const reason = this.reason ? ` ${this.reason}` : '';
    return `${this.name}: ${this.codeName}${reason}: ${this.message}`;
  }
}

/**
 * Turns a grpc-js error into an SSSNError (other errors are returned as is).
 *
 * @param {unknown} error
 * @returns {SSSNError | unknown}
 */
export function toSSSNError(error) {
  if (error instanceof SSSNError || typeof error?.code !== 'number' || !error.metadata) {
    return error;
  }
  const decoded = decodeStatus(error);
  return fromDecoded(
    error.code,
    { message: decoded?.message ?? error.details ?? error.message, details: decoded?.details ?? [] },
    error,
  );
}

/**
 * The INVALID_ARGUMENT `INVALID_PAYLOAD` error the client raises itself, before
 * any call, for input it cannot send (as the server words its own).
 *
 * @param {string} field the offending field, such as `channel.form`
 * @param {string} description what is wrong with it
 * @returns {SSSNError}
 */
export function invalidArgument(field, description) {
  return new SSSNError({
    code: Status.INVALID_ARGUMENT,
    message: `${field}: ${description}`,
    reason: 'INVALID_PAYLOAD',
    fieldViolations: [{ field, description }],
  });
}

/**
 * The DATA_LOSS `ARTIFACT_INTEGRITY` error of a payload whose size or sha256
 * does not match its artifact's metadata (checked by the client; the
 * server's ErrorReason has no such value).
 *
 * @param {string} artifactId
 * @param {string} message
 * @returns {SSSNError}
 */
export function integrityError(artifactId, message) {
  return new SSSNError({
    code: Status.DATA_LOSS,
    message,
    reason: 'ARTIFACT_INTEGRITY',
    metadata: { artifact_id: artifactId },
  });
}
