// Loads the sssn.v1 contract from the .proto files at run time (no generated code).

import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The repository's `protos/` folder: the one source of the contract. */
export const PROTOS_DIR = fileURLToPath(new URL('../../../protos', import.meta.url));

/** Where the two vendored `google.rpc` files (Status, ErrorInfo, BadRequest) live. */
export const GOOGLE_RPC_PROTOS_DIR = fileURLToPath(new URL('../protos', import.meta.url));

/**
 * How messages are mapped to JavaScript objects: camelCase field names, int64
 * as decimal strings (converted to bigint by the client, so no precision is
 * lost past 2^53), enums as their names, and unset fields as their defaults.
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

const cache = new Map();

/**
 * Loads every `sssn/v1/*.proto` under `protosDir` and returns the service
 * constructor and the enums a client needs.
 *
 * @param {string} [protosDir] folder holding `sssn/v1/*.proto`
 * @returns {{StoreService: grpc.ServiceClientConstructor, errorReasons: string[], channelForms: string[]}}
 */
export function loadContract(protosDir = PROTOS_DIR) {
  const cached = cache.get(protosDir);
  if (cached) return cached;
  const files = readdirSync(path.join(protosDir, 'sssn', 'v1'))
    .filter((name) => name.endsWith('.proto'))
    .sort()
    .map((name) => `sssn/v1/${name}`);
  const definition = protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [protosDir] });
  const loaded = grpc.loadPackageDefinition(definition);
  const contract = {
    StoreService: loaded.sssn.v1.StoreService,
    errorReasons: enumNames(definition['sssn.v1.ErrorReason'], 'ERROR_REASON_'),
    channelForms: enumNames(definition['sssn.v1.ChannelForm'], 'CHANNEL_FORM_'),
  };
  cache.set(protosDir, contract);
  return contract;
}

// The names of an enum's values without their prefix, UNSPECIFIED left out.
function enumNames(enumDefinition, prefix) {
  return enumDefinition.type.value
    .map((value) => value.name)
    .filter((name) => name !== `${prefix}UNSPECIFIED`)
    .map((name) => name.slice(prefix.length));
}
