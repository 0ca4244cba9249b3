// SSSNClient: a promise-based client of sssn.v1.StoreService over @grpc/grpc-js.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';

import { loadContract } from './contract.js';
import { fromAppendError, integrityError, invalidArgument, toSSSNError } from './errors.js';
import {
  fromStruct,
  fromTimestamp,
  fromTimestampNanos,
  fromValue,
  toInt64,
  toStruct,
  toTimestamp,
  toValue,
} from './json.js';
import { resolveTarget } from './target.js';

/** Where the client connects when no target is given and $SSSN_TARGET is unset (as the Python client). */
export const DEFAULT_TARGET = 'localhost:7700';

/** @deprecated the former name of `DEFAULT_TARGET`. */
export const DEFAULT_ADDRESS = DEFAULT_TARGET;

/** Payloads above this many bytes are streamed with `UploadArtifact`, well under the 4 MiB message limit. */
export const UPLOAD_THRESHOLD = 2 * 1024 * 1024;

/** Size of each `UploadArtifact` data message. */
export const UPLOAD_CHUNK = 1024 * 1024;

/** The most events the server returns per `QueryEvents` call, whatever the limit. */
export const QUERY_PAGE_MAX = 10_000;

const DEFAULT_MEDIA_TYPE = 'application/octet-stream';

// Reads change nothing, so replaying them after UNAVAILABLE (a restarting
// server, a dropped connection) is safe; writes are not retried, as in the
// Python client: an append without an id could be stored twice.
const SERVICE_CONFIG = JSON.stringify({
  methodConfig: [
    {
      name: [
        'GetChannel',
        'ListChannels',
        'GetEvent',
        'QueryEvents',
        'GetSubscription',
        'ListSubscriptions',
        'GetArtifact',
        'ReadArtifact',
        'GetSnapshot',
      ].map((method) => ({ service: 'sssn.v1.StoreService', method })),
      retryPolicy: {
        maxAttempts: 5,
        initialBackoff: '0.1s',
        maxBackoff: '5s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
});

const CHANNEL_OPTIONS = Object.freeze({
  'grpc.service_config': SERVICE_CONFIG,
  // Query and GetEvent answers are not split by the server and an event may
  // itself be close to 4 MiB, so grpc-js's default 4 MiB cap would refuse them.
  'grpc.max_receive_message_length': -1,
  'grpc.max_reconnect_backoff_ms': 30_000,
});

let warnedAddressVariable = false;

// $SSSN_TARGET, else the deprecated $SSSN_ADDRESS (with a warning), else the default.
function targetFromEnvironment() {
  if (process.env.SSSN_TARGET) return process.env.SSSN_TARGET;
  if (process.env.SSSN_ADDRESS) {
    if (!warnedAddressVariable) {
      warnedAddressVariable = true;
      process.emitWarning('SSSN_ADDRESS is deprecated; set SSSN_TARGET instead', 'DeprecationWarning');
    }
    return process.env.SSSN_ADDRESS;
  }
  return DEFAULT_TARGET;
}

/** Deadline of every call but `follow`, in milliseconds, unless the client is told otherwise. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * @typedef {object} Channel
 * @property {string} name
 * @property {string} schema
 * @property {string} form the form in the reference's spelling: `log`, `latest-state`, ...
 * @property {string} description
 * @property {Record<string, unknown>} metadata
 */

/**
 * @typedef {object} Event
 * @property {string} id
 * @property {bigint} cursor position in the store, assigned by the server
 * @property {string} channel
 * @property {Date | null} timestamp
 * @property {bigint | null} timestampNanos the same instant in nanoseconds since the epoch, exact
 * @property {string} source
 * @property {string} kind
 * @property {unknown} payload any JSON value
 * @property {string} schema
 * @property {Record<string, unknown>} metadata
 * @property {string} correlationId
 * @property {string[]} parentIds
 */

/**
 * @typedef {object} Subscription
 * @property {string} id
 * @property {string} channel
 * @property {bigint} cursor cursor of the last event delivered
 * @property {string} consumer
 * @property {number} batchSize
 * @property {string} kind the kind filter; empty delivers every kind
 * @property {Record<string, unknown>} metadata
 */

/**
 * @typedef {object} Artifact
 * @property {string} id
 * @property {string} channel
 * @property {string} mediaType
 * @property {bigint} size
 * @property {string} sha256 lowercase hex
 * @property {Record<string, unknown>} metadata
 * @property {string[]} eventIds
 */

/**
 * @typedef {object} Snapshot
 * @property {string} name
 * @property {string} channel
 * @property {Date | null} timestamp
 * @property {bigint | null} timestampNanos the same instant in nanoseconds since the epoch, exact
 * @property {unknown} value any JSON value
 * @property {string} schema
 * @property {string} sourceEventId
 * @property {Record<string, unknown>} metadata
 */

/**
 * A client of one SSSN server. Every method returns a promise (or an async
 * iterable for streams) and rejects with an `SSSNError` carrying the gRPC
 * code and the ErrorInfo `reason` when the call fails.
 */
export class SSSNClient {
  #stub;
  #timeoutMs;
  #forms;
  #metadata;

  /**
   * @param {string} [target] `host:port`, `http://host:port` (plain text),
   *   `https://host:port` (TLS) or a gRPC target such as `dns:///host:port`;
   *   defaults to $SSSN_TARGET (then the deprecated $SSSN_ADDRESS), then localhost:7700
   * @param {object} [options]
   * @param {grpc.ChannelCredentials} [options.credentials] TLS credentials; insecure by default
   * @param {Record<string, string>} [options.metadata] sent with every call, such as
   *   `{ authorization: 'Bearer TOKEN' }`
   * @param {number} [options.timeoutMs] deadline of each call but `follow` (30 s)
   * @param {grpc.ChannelOptions} [options.channelOptions] options passed to grpc-js
   * @param {string} [options.protosDir] folder holding `sssn/v1/*.proto`
   * @throws {SSSNError} INVALID_ARGUMENT `INVALID_PAYLOAD` for a target that cannot work
   */
  constructor(target = targetFromEnvironment(), options = {}) {
    const { StoreService, channelForms } = loadContract(options.protosDir);
    const { address, credentials } = resolveTarget(target, options.credentials);
    this.address = address;
    this.#stub = new StoreService(address, credentials, {
      ...CHANNEL_OPTIONS,
      ...(options.channelOptions ?? {}),
    });
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#forms = channelForms;
    this.#metadata = Object.entries(options.metadata ?? {});
  }

  /** Closes the connection; calls in flight are cancelled. */
  close() {
    this.#stub.close();
  }

  // Channels

  /**
   * Creates a channel.
   *
   * @param {{name: string, schema?: string, form?: string, description?: string, metadata?: object}} channel
   *   `form` may be written `latest-state`, `LATEST_STATE` or `CHANNEL_FORM_LATEST_STATE`
   * @returns {Promise<Channel>} the stored channel, its form resolved
   */
  async createChannel(channel) {
    const response = await this.#unary('CreateChannel', { channel: this.#toChannel(channel) });
    return this.#fromChannel(response.channel);
  }

  /**
   * @param {string} name
   * @returns {Promise<Channel>}
   */
  async getChannel(name) {
    const response = await this.#unary('GetChannel', { name });
    return this.#fromChannel(response.channel);
  }

  /**
   * One page of channels, ordered by name.
   *
   * @param {{pageSize?: number, pageToken?: string}} [page]
   * @returns {Promise<{channels: Channel[], nextPageToken: string}>} an empty
   *   `nextPageToken` means this is the last page
   */
  async listChannels({ pageSize = 0, pageToken = '' } = {}) {
    const response = await this.#unary('ListChannels', { pageSize, pageToken });
    return {
      channels: response.channels.map((channel) => this.#fromChannel(channel)),
      nextPageToken: response.nextPageToken,
    };
  }

  /**
   * Deletes a channel with its events, subscriptions, snapshots and the
   * records of its artifacts (needs the admin grant when the server checks
   * tokens).
   *
   * @param {string} name
   * @returns {Promise<bigint>} how many events the channel held
   */
  async deleteChannel(name) {
    const response = await this.#unary('DeleteChannel', { name });
    return BigInt(response.deletedEvents);
  }

  // Events

  /**
   * Appends one event. Setting `id` makes the call safe to retry: the same id
   * in the same channel returns the stored event unchanged.
   *
   * @param {{channel: string, payload?: unknown, kind?: string, id?: string, source?: string,
   *   schema?: string, metadata?: object, correlationId?: string, parentIds?: string[],
   *   timestamp?: Date | string | number | bigint}} event `timestamp`: see `toTimestamp`
   * @returns {Promise<Event>} the stored event with `id`, `cursor` and `timestamp` set
   */
  async appendEvent(event) {
    const sent = toEvent(event);
    const response = await this.#unary('AppendEvent', { event: sent });
    return acknowledged(sent, response.event, response.abridged);
  }

  /**
   * Appends several events atomically: all are stored, or none.
   *
   * @param {Array<Parameters<SSSNClient['appendEvent']>[0]>} events
   * @returns {Promise<Event[]>} the stored events, in request order
   */
  async appendEvents(events) {
    const sent = events.map(toEvent);
    const response = await this.#unary('AppendEvents', { events: sent });
    return response.events.map((stored, index) => acknowledged(sent[index], stored, response.abridged));
  }

  /**
   * Appends events independently over one bidirectional stream, sent in
   * requests of `batchSize` events: yields, in order, each stored event or
   * the SSSNError that refused that event alone (the others are stored).
   * For a long-running producer; `events` may be any (async) iterable.
   *
   * @param {Iterable<Parameters<SSSNClient['appendEvent']>[0]> | AsyncIterable<Parameters<SSSNClient['appendEvent']>[0]>} events
   * @param {{batchSize?: number}} [options]
   * @returns {AsyncGenerator<Event | SSSNError>}
   */
  async *appendEventStream(events, { batchSize = 16 } = {}) {
    const call = this.#stub.AppendEventStream(this.#callMetadata());
    call.on('error', () => {}); // seen by the loop below
    const sent = [];
    const writing = (async () => {
      let batch = [];
      for await (const event of events) {
        batch.push(toEvent(event));
        if (batch.length === batchSize) {
          sent.push(...batch);
          call.write({ events: batch });
          batch = [];
        }
      }
      if (batch.length) {
        sent.push(...batch);
        call.write({ events: batch });
      }
      call.end();
    })();
    writing.catch(() => call.cancel());
    let answered = 0;
    try {
      for await (const response of call) {
        for (const result of response.results) {
          const event = sent[answered];
          answered += 1;
          yield result.result === 'event'
            ? acknowledged(event, result.event, response.abridged)
            : fromAppendError(result.error);
        }
      }
      await writing; // an iterable that failed ends the stream: its error comes last
    } catch (error) {
      throw toSSSNError(error);
    } finally {
      call.cancel();
    }
  }

  /**
   * @param {string} id
   * @returns {Promise<Event>}
   */
  async getEvent(id) {
    const response = await this.#unary('GetEvent', { id });
    return fromEvent(response.event);
  }

  /**
   * Up to `limit` events of one channel with a cursor greater than
   * `afterCursor`, in cursor order. Fewer than `limit` means the channel has
   * no more for now: a page the server cut short to keep its response small,
   * or a limit above the 10,000 events it returns per call, is read over as
   * many calls as it takes.
   *
   * @param {string} channel
   * @param {{afterCursor?: bigint | number | string, limit?: number, kind?: string}} [query]
   *   `limit` defaults to 100
   * @returns {Promise<Event[]>}
   */
  async queryEvents(channel, { afterCursor = 0n, limit = 100, kind = '' } = {}) {
    const events = [];
    let after = toInt64(afterCursor);
    let left = limit;
    for (;;) {
      // A limit the server refuses (<= 0) goes out as given, for it to say so.
      const asked = Number.isInteger(left) && left > 0 ? Math.min(left, QUERY_PAGE_MAX) : left;
      const response = await this.#unary('QueryEvents', { channel, afterCursor: after, limit: asked, kind });
      const page = response.events.map(fromEvent);
      events.push(...page);
      left -= page.length;
      if (page.length) after = String(page.at(-1).cursor);
      const atEnd = page.length < asked && !response.truncated;
      // An empty page cannot move forward, even a truncated one: stop, not spin.
      if (!page.length || atEnd || left <= 0) return events;
    }
  }

  // Subscriptions

  /**
   * Creates a subscription over a channel, starting at its beginning; the
   * same id for the same channel returns the existing subscription.
   *
   * @param {{channel: string, id?: string, consumer?: string, batchSize?: number,
   *   kind?: string, metadata?: object}} subscription
   * @returns {Promise<Subscription>}
   */
  async createSubscription({ channel, id = '', consumer = '', batchSize, kind = '', metadata }) {
    const request = {
      channel,
      subscriptionId: id,
      consumer,
      filter: { kind },
      metadata: toStruct(metadata),
    };
    if (batchSize !== undefined) request.batchSize = batchSize;
    const response = await this.#unary('CreateSubscription', request);
    return fromSubscription(response.subscription);
  }

  /**
   * @param {string} id
   * @returns {Promise<Subscription>} with its current cursor
   */
  async getSubscription(id) {
    const response = await this.#unary('GetSubscription', { subscriptionId: id });
    return fromSubscription(response.subscription);
  }

  /**
   * One page of subscriptions with their cursors, ordered by id, optionally
   * only those of one channel (NOT_FOUND `CHANNEL_NOT_FOUND` if it is missing).
   *
   * @param {{channel?: string, pageSize?: number, pageToken?: string}} [page]
   * @returns {Promise<{subscriptions: Subscription[], nextPageToken: string}>} an
   *   empty `nextPageToken` means this is the last page
   */
  async listSubscriptions({ channel = '', pageSize = 0, pageToken = '' } = {}) {
    const response = await this.#unary('ListSubscriptions', { channel, pageSize, pageToken });
    return {
      subscriptions: response.subscriptions.map(fromSubscription),
      nextPageToken: response.nextPageToken,
    };
  }

  /**
   * Deletes a subscription; a stream open on it ends with NOT_FOUND
   * `SUBSCRIPTION_NOT_FOUND`, as does deleting one that does not exist.
   *
   * @param {string} id
   * @returns {Promise<void>}
   */
  async deleteSubscription(id) {
    await this.#unary('DeleteSubscription', { subscriptionId: id });
  }

  /**
   * Moves a subscription backward (replay) or forward (skip). Give exactly
   * one position: `cursor` (the next event delivered is the first after it;
   * 0 replays the channel) or `timestamp` (the next event is the first
   * stamped at or after it). An open stream continues from there.
   *
   * @param {string} id
   * @param {{cursor?: bigint | number | string, timestamp?: Date | string | number | bigint}} position
   *   `timestamp`: see `toTimestamp` (a bigint is nanoseconds since the epoch)
   * @returns {Promise<Subscription>} with its new cursor
   * @throws {SSSNError} INVALID_ARGUMENT `INVALID_PAYLOAD` for no position, both, or a negative cursor
   */
  async seekSubscription(id, { cursor, timestamp } = {}) {
    if ((cursor === undefined) === (timestamp === undefined)) {
      throw invalidArgument('position', 'give exactly one of cursor and timestamp');
    }
    const request = { subscriptionId: id };
    if (cursor !== undefined) request.cursor = toInt64(cursor);
    else request.timestamp = toTimestamp(timestamp);
    const response = await this.#unary('SeekSubscription', request);
    return fromSubscription(response.subscription);
  }

  /**
   * Delivers the subscription's pending events (at most `limit`, by default
   * its batch size) and moves its cursor past them.
   *
   * @param {string} subscriptionId
   * @param {{limit?: number}} [options]
   * @returns {Promise<Event[]>}
   */
  async pull(subscriptionId, { limit } = {}) {
    const events = [];
    for await (const event of this.#pull(subscriptionId, { limit, follow: false })) {
      events.push(event);
    }
    return events;
  }

  /**
   * Follows a subscription: yields its pending events, then every matching
   * event as soon as it is committed, until `signal` aborts or the loop
   * breaks (both cancel the stream and end the iteration normally). In the
   * default ack mode the server persists the cursor as it sends, so following
   * again resumes after the last event received; a loop that stops reading
   * holds the stream back once the 64 KiB HTTP/2 window and the 16 messages
   * grpc-js buffers are full, so a consumer that dies while stuck loses at
   * most those (docs/delivery.md). A stream ended by the server
   * rejects with an SSSNError: UNAVAILABLE `SHUTTING_DOWN` while it stops
   * (reconnect), ABORTED `SUBSCRIPTION_TAKEN_OVER` when another stream took
   * the subscription over (do not reconnect).
   *
   * With `ackMode: 'manual'` the cursor moves only when `ack()` is called
   * (events not acknowledged come again to the next stream), and the server
   * pauses the stream at `maxUnacked` outstanding events (0: its default).
   * Each event a following stream yields carries `leaseEpoch`, the stream's
   * lease on the subscription, which `ack()` sends back: an acknowledgement
   * from a stream that another one took over since (on any replica) is
   * refused with FAILED_PRECONDITION `SUBSCRIPTION_LEASE_LOST`.
   *
   * @param {string} subscriptionId
   * @param {{limit?: number, signal?: AbortSignal, ackMode?: 'auto' | 'manual', maxUnacked?: number}} [options]
   *   `limit`: most events per message
   * @returns {AsyncGenerator<Event>}
   */
  follow(subscriptionId, { limit, signal, ackMode = 'auto', maxUnacked = 0 } = {}) {
    if (ackMode !== 'auto' && ackMode !== 'manual') {
      throw invalidArgument('ack_mode', "must be 'auto' or 'manual'");
    }
    return this.#pull(subscriptionId, { limit, follow: true, signal, ackMode, maxUnacked });
  }

  /**
   * Acknowledges every event of a manual-mode subscription up to this one
   * (or this cursor) and returns the subscription with its persisted cursor.
   * Given an event that `follow()` yielded, sends its stream's `leaseEpoch`.
   *
   * @param {string} subscriptionId
   * @param {Event | bigint | number | string} eventOrCursor
   * @param {{leaseEpoch?: bigint | number | string}} [options] overrides the event's
   * @returns {Promise<Subscription>}
   * @throws {SSSNError} INVALID_ARGUMENT below the acknowledged cursor or beyond what was
   *   delivered; FAILED_PRECONDITION `SUBSCRIPTION_LEASE_LOST` once another stream owns it
   */
  async ack(subscriptionId, eventOrCursor, { leaseEpoch } = {}) {
    const isEvent = typeof eventOrCursor === 'object' && eventOrCursor !== null;
    const cursor = isEvent ? eventOrCursor.cursor : eventOrCursor;
    const epoch = leaseEpoch ?? (isEvent ? eventOrCursor.leaseEpoch : undefined) ?? 0n;
    const response = await this.#unary('AckSubscription', {
      subscriptionId,
      cursor: toInt64(cursor),
      leaseEpoch: toInt64(epoch),
    });
    return fromSubscription(response.subscription);
  }

  async *#pull(subscriptionId, { limit, follow, signal, ackMode = 'auto', maxUnacked = 0 }) {
    const request = { subscriptionId, follow };
    if (limit !== undefined) request.limit = limit;
    if (ackMode === 'manual') {
      request.ackMode = 'ACK_MODE_MANUAL';
      request.maxUnacked = maxUnacked;
    }
    // A following stream lives as long as the consumer wants; a pull is one call.
    const call = this.#stub.PullSubscription(request, this.#callMetadata(), follow ? {} : this.#deadline());
    // A cancelled call still emits 'error' (CANCELLED); the loop below sees
    // errors through iteration, this listener only keeps them from being
    // unhandled once the loop is gone.
    call.on('error', () => {});
    let cancelled = false;
    const cancel = () => {
      cancelled = true;
      call.cancel();
    };
    if (signal?.aborted) cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      for await (const message of call) {
        const leaseEpoch = BigInt(message.leaseEpoch);
        for (const event of message.events) {
          const delivered = fromEvent(event);
          if (leaseEpoch) delivered.leaseEpoch = leaseEpoch;
          yield delivered;
        }
      }
    } catch (error) {
      if (cancelled && error?.code === grpc.status.CANCELLED) return;
      throw toSSSNError(error);
    } finally {
      signal?.removeEventListener('abort', cancel);
      cancel();
    }
  }

  // Artifacts

  /**
   * Stores a payload and returns its metadata, once the stored size and
   * sha256 match what was sent (else DATA_LOSS `ARTIFACT_INTEGRITY`).
   * Payloads above 2 MiB, and streams, are sent with `UploadArtifact` in
   * 1 MiB chunks.
   *
   * @param {Uint8Array | string | AsyncIterable<Uint8Array | string>} data
   *   bytes, text (stored as UTF-8), or chunks such as a file's read stream
   * @param {{channel?: string, mediaType?: string, metadata?: object, eventIds?: string[]}} [about]
   * @returns {Promise<Artifact>}
   */
  async writeArtifact(data, { channel = '', mediaType = '', metadata, eventIds = [] } = {}) {
    const header = {
      channel,
      mediaType: mediaType || DEFAULT_MEDIA_TYPE,
      metadata: toStruct(metadata),
      eventIds,
    };
    const whole = typeof data === 'string' || data instanceof Uint8Array ? Buffer.from(data) : null;
    if (whole === null || whole.length > UPLOAD_THRESHOLD) {
      return this.#upload(whole === null ? data : [whole], header);
    }
    const response = await this.#unary('WriteArtifact', { data: whole, ...header });
    return verifyWritten(fromArtifact(response.artifact), whole.length, sha256(whole));
  }

  async #upload(chunks, header) {
    const hash = createHash('sha256');
    let size = 0;
    let settle;
    const settled = new Promise((resolve) => {
      settle = resolve;
    });
    const response = await new Promise((resolve, reject) => {
      const call = this.#stub.UploadArtifact(this.#callMetadata(), this.#deadline(), (error, answer) => {
        settle();
        if (error) reject(toSSSNError(error));
        else resolve(answer);
      });
      const send = async () => {
        call.write({ header });
        for await (const chunk of chunks) {
          const bytes = Buffer.from(chunk);
          for (let offset = 0; offset < bytes.length; offset += UPLOAD_CHUNK) {
            const piece = bytes.subarray(offset, offset + UPLOAD_CHUNK);
            hash.update(piece);
            size += piece.length;
            // Back pressure, unless the call ended meanwhile (its error is the answer).
            if (!call.write({ data: piece })) await Promise.race([once(call, 'drain'), settled]);
          }
        }
        call.end();
      };
      send().catch((error) => {
        reject(error); // first: the cancelled call's own error must not win
        call.cancel();
      });
    });
    return verifyWritten(fromArtifact(response.artifact), size, hash.digest('hex'));
  }

  /**
   * @param {string} id
   * @returns {Promise<Artifact>} the artifact's metadata (not its payload)
   */
  async getArtifact(id) {
    const response = await this.#unary('GetArtifact', { id });
    return fromArtifact(response.artifact);
  }

  /**
   * Reads an artifact's payload (streamed in chunks) and its metadata, and
   * checks the payload against its size and sha256 (else DATA_LOSS
   * `ARTIFACT_INTEGRITY`).
   *
   * @param {string} id
   * @returns {Promise<{artifact: Artifact, data: Buffer}>}
   */
  async readArtifact(id) {
    const call = this.#stub.ReadArtifact({ id }, this.#callMetadata(), this.#deadline());
    const chunks = [];
    let artifact = null;
    try {
      for await (const message of call) {
        if (message.artifact && !artifact) artifact = fromArtifact(message.artifact);
        chunks.push(message.data);
      }
    } catch (error) {
      throw toSSSNError(error);
    }
    const data = Buffer.concat(chunks);
    if (!artifact) throw integrityError(id, `the stream of artifact ${id} carried no metadata`);
    const digest = sha256(data);
    if (BigInt(data.length) !== artifact.size || digest !== artifact.sha256) {
      throw integrityError(
        artifact.id,
        `artifact ${artifact.id} should be ${artifact.size} bytes with sha256 ${artifact.sha256}, ` +
          `but ${data.length} bytes with sha256 ${digest} arrived`,
      );
    }
    return { artifact, data };
  }

  // Snapshots

  /**
   * Creates or replaces a named snapshot.
   *
   * @param {{name: string, value?: unknown, channel?: string, schema?: string,
   *   sourceEventId?: string, metadata?: object, timestamp?: Date | string | number | bigint}} snapshot
   * @returns {Promise<Snapshot>}
   */
  async putSnapshot({ name, value, channel = '', schema = '', sourceEventId = '', metadata, timestamp }) {
    const response = await this.#unary('PutSnapshot', {
      snapshot: {
        name,
        value: toValue(value),
        channel,
        schema,
        sourceEventId,
        metadata: toStruct(metadata),
        timestamp: toTimestamp(timestamp),
      },
    });
    return fromSnapshot(response.snapshot);
  }

  /**
   * @param {string} name
   * @returns {Promise<Snapshot>}
   */
  async getSnapshot(name) {
    const response = await this.#unary('GetSnapshot', { name });
    return fromSnapshot(response.snapshot);
  }

  // Plumbing

  #unary(method, request) {
    return new Promise((resolve, reject) => {
      this.#stub[method](request, this.#callMetadata(), this.#deadline(), (error, response) => {
        if (error) reject(toSSSNError(error));
        else resolve(response);
      });
    });
  }

  #deadline() {
    return { deadline: new Date(Date.now() + this.#timeoutMs) };
  }

  #callMetadata() {
    const metadata = new grpc.Metadata();
    for (const [key, value] of this.#metadata) metadata.set(key, value);
    return metadata;
  }

  #toChannel({ name, schema = '', form, description = '', metadata }) {
    return {
      name,
      schema,
      form: form ? this.#formName(form) : 'CHANNEL_FORM_UNSPECIFIED',
      description,
      metadata: toStruct(metadata),
    };
  }

  #fromChannel(channel) {
    return {
      name: channel.name,
      schema: channel.schema,
      form: String(channel.form).replace(/^CHANNEL_FORM_/, '').toLowerCase().replaceAll('_', '-'),
      description: channel.description,
      metadata: fromStruct(channel.metadata),
    };
  }

  // `latest-state`, `LATEST_STATE` and `CHANNEL_FORM_LATEST_STATE` all name one form.
  #formName(form) {
    const short = String(form).toUpperCase().replaceAll('-', '_').replace(/^CHANNEL_FORM_/, '');
    if (!this.#forms.includes(short)) {
      const spellings = this.#forms.map((name) => name.toLowerCase().replaceAll('_', '-'));
      throw invalidArgument('channel.form', `must be one of ${spellings.join(', ')}`);
    }
    return `CHANNEL_FORM_${short}`;
  }
}

function toEvent({
  channel,
  payload,
  kind = '',
  id = '',
  source = '',
  schema = '',
  metadata,
  correlationId = '',
  parentIds = [],
  timestamp,
}) {
  return {
    id,
    channel,
    timestamp: toTimestamp(timestamp),
    source,
    kind,
    payload: toValue(payload),
    schema,
    metadata: toStruct(metadata),
    correlationId,
    parentIds,
  };
}

// The event an append returns: the stored one, or for an abridged
// acknowledgement (only id, channel, cursor and timestamp) the event as it
// was sent, completed with those four fields.
function acknowledged(sent, stored, abridged) {
  if (!abridged) return fromEvent(stored);
  return fromEvent({
    ...sent,
    id: stored.id,
    channel: stored.channel,
    cursor: stored.cursor,
    timestamp: stored.timestamp,
    kind: sent.kind || 'event', // the server's default, as a full answer would say
  });
}

function fromEvent(event) {
  return {
    id: event.id,
    cursor: BigInt(event.cursor),
    channel: event.channel,
    timestamp: fromTimestamp(event.timestamp),
    timestampNanos: fromTimestampNanos(event.timestamp),
    source: event.source,
    kind: event.kind,
    payload: fromValue(event.payload),
    schema: event.schema,
    metadata: fromStruct(event.metadata),
    correlationId: event.correlationId,
    parentIds: [...event.parentIds],
  };
}

function fromSubscription(subscription) {
  return {
    id: subscription.id,
    channel: subscription.channel,
    cursor: BigInt(subscription.cursor),
    consumer: subscription.consumer,
    batchSize: subscription.batchSize,
    kind: subscription.filter?.kind ?? '',
    metadata: fromStruct(subscription.metadata),
  };
}

function fromArtifact(artifact) {
  return {
    id: artifact.id,
    channel: artifact.channel,
    mediaType: artifact.mediaType,
    size: BigInt(artifact.size),
    sha256: artifact.sha256,
    metadata: fromStruct(artifact.metadata),
    eventIds: [...artifact.eventIds],
  };
}

function fromSnapshot(snapshot) {
  return {
    name: snapshot.name,
    channel: snapshot.channel,
    timestamp: fromTimestamp(snapshot.timestamp),
    timestampNanos: fromTimestampNanos(snapshot.timestamp),
    value: fromValue(snapshot.value),
    schema: snapshot.schema,
    sourceEventId: snapshot.sourceEventId,
    metadata: fromStruct(snapshot.metadata),
  };
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

// The stored artifact, once its size and sha256 match what was sent.
function verifyWritten(artifact, size, digest) {
  if (artifact.size !== BigInt(size) || artifact.sha256 !== digest) {
    throw integrityError(
      artifact.id,
      `artifact ${artifact.id} was stored as ${artifact.size} bytes with sha256 ${artifact.sha256}, ` +
        `but ${size} bytes with sha256 ${digest} were sent`,
    );
  }
  return artifact;
}

/** The package's version, for the CLI's --version. */
export const VERSION = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
