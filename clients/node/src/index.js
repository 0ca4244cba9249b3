// Public API of the Node.js client of sssn.v1.StoreService.

import { loadContract } from './contract.js';

export {
  DEFAULT_ADDRESS,
  DEFAULT_TARGET,
  DEFAULT_TIMEOUT_MS,
  QUERY_PAGE_MAX,
  SSSNClient,
  UPLOAD_CHUNK,
  UPLOAD_THRESHOLD,
  VERSION,
} from './client.js';
export { GOOGLE_RPC_PROTOS_DIR, PROTOS_DIR, loadContract } from './contract.js';
export { ERROR_DOMAIN, SSSNError, STATUS_DETAILS_KEY, decodeStatus, toSSSNError } from './errors.js';
export { resolveTarget } from './target.js';
export {
  fromStruct,
  fromTimestamp,
  fromTimestampNanos,
  fromValue,
  stringify,
  toStruct,
  toTimestamp,
  toValue,
} from './json.js';

/**
 * The ErrorInfo reasons of the contract (the `ErrorReason` enum without its
 * `ERROR_REASON_` prefix), read from protos/: `ErrorReason.CHANNEL_NOT_FOUND`
 * is `'CHANNEL_NOT_FOUND'`.
 */
export const ErrorReason = Object.freeze(
  Object.fromEntries(loadContract().errorReasons.map((reason) => [reason, reason])),
);
