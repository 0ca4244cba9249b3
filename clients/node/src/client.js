// SSSNClient: a promise-based client of sssn.v1.StoreService over @grpc/grpc-js.

import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';

import { loadContract } from './contract.js';
import { toSSSNError } from './errors.js';
import {
  fromStruct,
  fromTimestamp,
  fromValue,
  toInt64,
  toStruct,
  toTimestamp,
  toValue,
} from './json.js';

/** Where the client connects when no address is given: $SSSN_ADDRESS or the server's default. */
export const DEFAULT_ADDRESS = '127.0.0.1:7700';

/** Per-call deadline of unary calls, in milliseconds, unless the client is told otherwise. */
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
 * A client of one SSSN server. Every method returns a promise (or an async
 * iterable for streams) and rejects with an `SSSNError` carrying the gRPC
 * code and the ErrorInfo `reason` when the call fails.
 */
export class SSSNClient {
  #stub;
  #timeoutMs;
  #forms;

  /**
   * @param {string} [address] `host:port`; defaults to $SSSN_ADDRESS, then 127.0.0.1:7700
   * @param {object} [options]
   * @param {grpc.ChannelCredentials} [options.credentials] TLS credentials; insecure by default
   * @param {number} [options.timeoutMs] deadline of each unary call (streams have none)
   * @param {grpc.ChannelOptions} [options.channelOptions] options passed to grpc-js
   * @param {string} [options.protosDir] folder holding `sssn/v1/*.proto`
   */
  constructor(address = process.env.SSSN_ADDRESS || DEFAULT_ADDRESS, options = {}) {
    const { StoreService, channelForms } = loadContract(options.protosDir);
    this.address = address;
    this.#stub = new StoreService(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#forms = channelForms;
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

  // Events

  /**
   * Appends one event. Setting `id` makes the call safe to retry: the same id
   * in the same channel returns the stored event unchanged.
   *
   * @param {{channel: string, payload?: unknown, kind?: string, id?: string, source?: string,
   *   schema?: string, metadata?: object, correlationId?: string, parentIds?: string[],
   *   timestamp?: Date | string}} event
   * @returns {Promise<Event>} the stored event with `id`, `cursor` and `timestamp` set
   */
  async appendEvent(event) {
    const response = await this.#unary('AppendEvent', { event: toEvent(event) });
    return fromEvent(response.event);
  }

  /**
   * Appends several events atomically: all are stored, or none.
   *
   * @param {Array<Parameters<SSSNClient['appendEvent']>[0]>} events
   * @returns {Promise<Event[]>} the stored events, in request order
   */
  async appendEvents(events) {
    const response = await this.#unary('AppendEvents', { events: events.map(toEvent) });
    return response.events.map(fromEvent);
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
   * Events of one channel with a cursor greater than `afterCursor`, in cursor order.
   *
   * @param {string} channel
   * @param {{afterCursor?: bigint | number | string, limit?: number, kind?: string}} [query]
   * @returns {Promise<Event[]>}
   */
  async queryEvents(channel, { afterCursor = 0n, limit, kind = '' } = {}) {
    const request = { channel, afterCursor: toInt64(afterCursor), kind };
    if (limit !== undefined) request.limit = limit;
    const response = await this.#unary('QueryEvents', request);
    return response.events.map(fromEvent);
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
   * Delivers the subscription's pending events (at most `limit`) and moves
   * its cursor past them.
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
   * @param {string} subscriptionId
   * @param {{limit?: number, signal?: AbortSignal}} [options] `limit`: most events per message
   * @returns {AsyncGenerator<Event>}
   */
  follow(subscriptionId, { limit, signal } = {}) {
    return this.#pull(subscriptionId, { limit, follow: true, signal });
  }

  async *#pull(subscriptionId, { limit, follow, signal }) {
    const request = { subscriptionId, follow };
    if (limit !== undefined) request.limit = limit;
    const call = this.#stub.PullSubscription(request);
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
        for (const event of message.events) yield fromEvent(event);
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
   * Stores a payload that fits in one message.
   *
   * @param {Uint8Array | string} data
   * @param {{channel?: string, mediaType?: string, metadata?: object, eventIds?: string[]}} [about]
   * @returns {Promise<{id: string, channel: string, mediaType: string, size: bigint,
   *   sha256: string, metadata: object, eventIds: string[]}>}
   */
  async writeArtifact(data, { channel = '', mediaType = '', metadata, eventIds = [] } = {}) {
    const response = await this.#unary('WriteArtifact', {
      data: Buffer.from(data),
      channel,
      mediaType,
      metadata: toStruct(metadata),
      eventIds,
    });
    return fromArtifact(response.artifact);
  }

  /**
   * Reads an artifact's payload (streamed in chunks) and its metadata.
   *
   * @param {string} id
   * @returns {Promise<{artifact: ReturnType<typeof fromArtifact>, data: Buffer}>}
   */
  async readArtifact(id) {
    const call = this.#stub.ReadArtifact({ id });
    const chunks = [];
    let artifact = null;
    try {
      for await (const message of call) {
        if (message.artifact) artifact = fromArtifact(message.artifact);
        chunks.push(message.data);
      }
    } catch (error) {
      throw toSSSNError(error);
    }
    return { artifact, data: Buffer.concat(chunks) };
  }

  // Snapshots

  /**
   * Creates or replaces a named snapshot.
   *
   * @param {{name: string, value?: unknown, channel?: string, schema?: string,
   *   sourceEventId?: string, metadata?: object, timestamp?: Date | string}} snapshot
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

  /** @param {string} name */
  async getSnapshot(name) {
    const response = await this.#unary('GetSnapshot', { name });
    return fromSnapshot(response.snapshot);
  }

  // Plumbing

  #unary(method, request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.#timeoutMs);
      this.#stub[method](request, { deadline }, (error, response) => {
        if (error) reject(toSSSNError(error));
        else resolve(response);
      });
    });
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
      throw new TypeError(`unknown channel form ${form}; one of ${this.#forms.join(', ')}`);
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

function fromEvent(event) {
  return {
    id: event.id,
    cursor: BigInt(event.cursor),
    channel: event.channel,
    timestamp: fromTimestamp(event.timestamp),
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
    value: fromValue(snapshot.value),
    schema: snapshot.schema,
    sourceEventId: snapshot.sourceEventId,
    metadata: fromStruct(snapshot.metadata),
  };
}

/** The package's version, for the CLI's --version. */
export const VERSION = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
