// The `sssn` commands: the Python command line's names, flags and JSON output.

import { open } from 'node:fs/promises';

import { loadContract } from '../contract.js';
import { SSSNError, invalidArgument } from '../errors.js';
import { Float, JSONDecodeError, dumps, floatFromText, loads } from '../python.js';
import { ArgumentTypeError, UsageError, float, int } from './args.js';

/** The forms as the reference spells them (`latest-state`), the only spellings the command line takes. */
export const CHANNEL_FORMS = loadContract().channelForms.map((form) => form.toLowerCase().replaceAll('_', '-'));

const INT32 = 2n ** 31n;
const INT64 = 2n ** 63n;
const NANOS_PER_SECOND = 1_000_000_000n;

// Argument types

function jsonValue(raw) {
  try {
    return loads(raw);
  } catch (error) {
    if (error instanceof JSONDecodeError) throw new ArgumentTypeError(`must be valid JSON (${error.message})`);
    throw error;
  }
}

function jsonObject(raw) {
  const value = jsonValue(raw);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ArgumentTypeError('must be a JSON object');
  }
  return value;
}

// An RFC 3339 date-time as Python's datetime.fromisoformat reads it (to the microsecond).
const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/** Seconds since the epoch, or an RFC 3339 date-time with its offset, as seconds. */
function instant(raw) {
  const seconds = floatFromText(raw);
  if (seconds !== null) return seconds;
  const parts = ISO_TIME.exec(raw);
  const [, year, month, day, hour = '0', minute = '0', second = '0', fraction = '', offset] = parts ?? [];
  const date = new Date(0);
  if (parts) date.setUTCFullYear(Number(year), Number(month) - 1, Number(day));
  const valid =
    parts &&
    Number(year) >= 1 &&
    date.getUTCMonth() === Number(month) - 1 &&
    date.getUTCDate() === Number(day) &&
    Number(hour) < 24 &&
    Number(minute) < 60 &&
    Number(second) < 60;
  if (!valid) {
    throw new ArgumentTypeError(
      'must be seconds since the epoch or an RFC 3339 time such as 2024-05-01T12:00:00Z',
    );
  }
  if (!offset) throw new ArgumentTypeError('needs a UTC offset, e.g. 2024-05-01T12:00:00Z');
  let offsetSeconds = 0;
  if (!/^[Zz]$/.test(offset)) {
    const digits = offset.replace(':', '');
    offsetSeconds = (digits[0] === '-' ? -1 : 1) * (Number(digits.slice(1, 3)) * 3600 + Number(digits.slice(3, 5) || 0) * 60);
  }
  date.setUTCHours(Number(hour), Number(minute), Number(second));
  const micros = date.getTime() * 1000 + Number(fraction.slice(0, 6).padEnd(6, '0')) - offsetSeconds * 1_000_000;
  // As Python's timedelta.total_seconds(): whole microseconds divided once.
  return micros / 1_000_000;
}

function jsonArgument(raw, label) {
  try {
    return loads(raw);
  } catch (error) {
    if (error instanceof JSONDecodeError) throw new UsageError(`${label} must be valid JSON (${error.message})`);
    throw error;
  }
}

// Values the Python client would refuse to encode, refused with its words.

function checkRange(value, bits, field) {
  const bound = bits === 32 ? INT32 : INT64;
  if (value < -bound || value >= bound) throw invalidArgument(field, `Value out of range: ${value}`);
  return value;
}

function int32(value, field) {
  return value === null ? undefined : Number(checkRange(value, 32, field));
}

/**
 * The google.protobuf.Timestamp of seconds since the epoch, rounded to the
 * nanosecond as the Python client rounds it (half to even).
 */
function timestampOf(seconds, field) {
  if (!Number.isFinite(seconds)) {
    throw invalidArgument(field, `cannot convert float ${Number.isNaN(seconds) ? 'NaN' : 'infinity'} to integer`);
  }
  let whole = Math.floor(seconds);
  let nanos = roundHalfEven((seconds - whole) * 1e9);
  if (nanos === 1e9) {
    whole += 1;
    nanos = 0;
  }
  return { seconds: String(whole), nanos };
}

function roundHalfEven(value) {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// Output: the Python client's models as its `to_dict()` shapes them.

/**
 * A timestamp as RFC 3339 in UTC, to the microsecond, as the Python command
 * line prints it: from the same float, rounded half up, then no fraction for
 * whole seconds, else three digits or six.
 */
function rfc3339(nanos) {
  const micros = BigInt(Math.floor(seconds(nanos).value * 1_000_000 + 0.5));
  let whole = micros / 1_000_000n;
  let fraction = micros % 1_000_000n;
  if (fraction < 0n) {
    fraction += 1_000_000n;
    whole -= 1n;
  }
  let text = new Date(Number(whole) * 1000).toISOString().slice(0, 19);
  if (fraction) {
    text += fraction % 1000n === 0n ? `.${String(fraction / 1000n).padStart(3, '0')}` : `.${String(fraction).padStart(6, '0')}`;
  }
  return `${text}Z`;
}

function seconds(nanos) {
  if (nanos === null) return new Float(0);
  let whole = nanos / NANOS_PER_SECOND;
  if (nanos % NANOS_PER_SECOND < 0n) whole -= 1n;
  const rest = nanos - whole * NANOS_PER_SECOND;
  // The same two float operations as Python's `seconds + nanos / 1e9`.
  return new Float(Number(whole) + Number(rest) / 1e9);
}

const orNull = (text) => text || null;

/** @returns {Record<string, unknown>} */
export function channelJSON(channel) {
  return {
    name: channel.name,
    schema: orNull(channel.schema),
    form: channel.form,
    description: channel.description,
    metadata: channel.metadata,
  };
}

export function eventJSON(event) {
  return {
    id: event.id,
    cursor: event.cursor,
    channel: event.channel,
    timestamp: rfc3339(event.timestampNanos),
    source: orNull(event.source),
    kind: event.kind,
    payload: event.payload,
    schema: orNull(event.schema),
    metadata: event.metadata,
    correlation_id: orNull(event.correlationId),
    parent_ids: event.parentIds,
  };
}

export function subscriptionJSON(subscription) {
  return {
    id: subscription.id,
    channel: subscription.channel,
    cursor: subscription.cursor,
    consumer: orNull(subscription.consumer),
    batch_size: subscription.batchSize,
    filters: subscription.kind ? { kind: subscription.kind } : {},
    metadata: subscription.metadata,
  };
}

export function artifactJSON(artifact) {
  return {
    id: artifact.id,
    channel: orNull(artifact.channel),
    media_type: artifact.mediaType,
    size: artifact.size,
    sha256: artifact.sha256,
    metadata: artifact.metadata,
    event_ids: artifact.eventIds,
  };
}

export function snapshotJSON(snapshot) {
  return {
    name: snapshot.name,
    channel: orNull(snapshot.channel),
    timestamp: rfc3339(snapshot.timestampNanos),
    value: snapshot.value,
    schema: orNull(snapshot.schema),
    source_event_id: orNull(snapshot.sourceEventId),
    metadata: snapshot.metadata,
  };
}

/** Writes one JSON line, compact, as the Python command line prints it. */
export function emit(value) {
  process.stdout.write(`${dumps(value)}\n`);
}

// Handlers: (client, values, context) => Promise<void>

async function channels(client) {
  let pageToken = '';
  do {
    const page = await client.listChannels({ pageSize: 1000, pageToken });
    page.channels.forEach((channel) => emit(channelJSON(channel)));
    pageToken = page.nextPageToken;
  } while (pageToken);
}

async function createChannel(client, args) {
  // The library also takes LATEST_STATE; the command line only the reference's spelling.
  if (!CHANNEL_FORMS.includes(args.form)) {
    throw invalidArgument('channel.form', `must be one of ${CHANNEL_FORMS.join(', ')}`);
  }
  const channel = await client.createChannel({
    name: args.name,
    schema: args.schema ?? '',
    form: args.form,
    description: args.description,
    metadata: args.metadata ?? {},
  });
  emit(channelJSON(channel));
}

async function getChannel(client, args) {
  emit(channelJSON(await client.getChannel(args.name)));
}

async function deleteChannel(client, args) {
  const deleted = await client.deleteChannel(args.name);
  emit({ name: args.name, deleted_events: deleted });
}

async function append(client, args) {
  const payload = jsonArgument(args.payload, 'event payload');
  const event = {
    id: args.id ?? '',
    channel: args.channel,
    source: args.source ?? '',
    kind: args.kind,
    payload,
    schema: args.schema ?? '',
    metadata: args.metadata ?? {},
    correlationId: args.correlation_id ?? '',
    parentIds: args.parent_ids ?? [],
  };
  if (args.timestamp !== null) event.timestamp = timestampOf(args.timestamp, 'event.timestamp');
  emit(eventJSON(await client.appendEvent(event)));
}

async function queryEvents(client, args) {
  checkRange(args.after_cursor, 64, 'query');
  // A positive limit is paged over in calls of at most 10,000; any other goes out as given.
  const limit = Number(args.limit > 0n ? args.limit : checkRange(args.limit, 32, 'query'));
  const events = await client.queryEvents(args.channel, {
    afterCursor: args.after_cursor,
    limit,
    kind: args.kind ?? '',
  });
  events.forEach((event) => emit(eventJSON(event)));
}

async function getEvent(client, args) {
  emit(eventJSON(await client.getEvent(args.id)));
}

async function createSubscription(client, args) {
  const subscription = await client.createSubscription({
    channel: args.channel,
    id: args.id ?? '',
    consumer: args.consumer ?? '',
    batchSize: int32(args.batch_size, 'subscription'),
    kind: args.kind ?? '',
    metadata: args.metadata ?? undefined,
  });
  emit(subscriptionJSON(subscription));
}

async function getSubscription(client, args) {
  emit(subscriptionJSON(await client.getSubscription(args.id)));
}

async function listSubscriptions(client, args) {
  let pageToken = '';
  do {
    const page = await client.listSubscriptions({ channel: args.channel ?? '', pageSize: 1000, pageToken });
    page.subscriptions.forEach((subscription) => emit(subscriptionJSON(subscription)));
    pageToken = page.nextPageToken;
  } while (pageToken);
}

async function deleteSubscription(client, args) {
  await client.deleteSubscription(args.id);
  emit({ id: args.id, deleted: true });
}

async function seekSubscription(client, args) {
  const position =
    args.cursor !== null
      ? { cursor: checkRange(args.cursor, 64, 'cursor') }
      : { timestamp: timestampOf(args.timestamp, 'timestamp') };
  emit(subscriptionJSON(await client.seekSubscription(args.id, position)));
}

async function pullSubscription(client, args) {
  const events = await client.pull(args.id, { limit: int32(args.limit, 'pull') });
  events.forEach((event) => emit(eventJSON(event)));
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

async function writeArtifact(client, args) {
  const about = {
    channel: args.channel ?? '',
    mediaType: args.media_type,
    metadata: args.metadata ?? undefined,
    eventIds: args.event_ids ?? [],
  };
  if ((args.data === null) === (args.file === null)) {
    throw new UsageError('give the artifact either as DATA or with --file, not both');
  }
  if (args.file !== null) {
    const file = await openForReading(args.file);
    try {
      emit(artifactJSON(await client.writeArtifact(readChunks(file, args.file), about)));
    } finally {
      await file.close();
    }
    return;
  }
  let data;
  if (args.encoding === 'base64') {
    // Strict, as Python's b64decode(validate=True): no stray characters, whole quanta.
    if (!BASE64.test(args.data) || args.data.length % 4 !== 0) throw new UsageError('DATA is not valid base64');
    data = Buffer.from(args.data, 'base64');
  } else {
    data = Buffer.from(args.data, 'utf8');
  }
  emit(artifactJSON(await client.writeArtifact(data, about)));
}

async function openForReading(path) {
  try {
    const file = await open(path, 'r');
    if ((await file.stat()).isDirectory()) {
      await file.close();
      throw Object.assign(new Error(`EISDIR: ${path}`), { code: 'EISDIR' });
    }
    return file;
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${strerror(error)}`);
  }
}

async function* readChunks(file, path) {
  const buffer = Buffer.alloc(1024 * 1024);
  for (;;) {
    let read;
    try {
      ({ bytesRead: read } = await file.read(buffer, 0, buffer.length, null));
    } catch (error) {
      throw new UsageError(`cannot read ${path}: ${strerror(error)}`);
    }
    if (read === 0) return;
    yield Buffer.from(buffer.subarray(0, read));
  }
}

// The C library's wording of an error number, as Python's OSError.strerror gives it.
const STRERROR = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EMFILE: 'Too many open files',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
};

/** An OS error's message in Python's words. */
export function strerror(error) {
  return STRERROR[error?.code] ?? String(error?.message ?? error);
}

async function getArtifact(client, args) {
  emit(artifactJSON(await client.getArtifact(args.id)));
}

async function readArtifact(client, args) {
  const { data } = await client.readArtifact(args.id);
  if (args.encoding === 'base64') {
    process.stdout.write(`${data.toString('base64')}\n`);
    return;
  }
  let text;
  try {
    // fatal: refuse what is not UTF-8; ignoreBOM: a leading BOM is text, as in Python.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data);
  } catch {
    throw new UsageError('the payload is not UTF-8 text; use --encoding base64');
  }
  process.stdout.write(`${text}\n`);
}

async function putSnapshot(client, args) {
  const value = jsonArgument(args.value, 'snapshot value');
  const snapshot = await client.putSnapshot({
    name: args.name,
    value,
    channel: args.channel ?? '',
    schema: args.schema ?? '',
    sourceEventId: args.source_event_id ?? '',
    metadata: args.metadata ?? undefined,
  });
  emit(snapshotJSON(snapshot));
}

async function getSnapshot(client, args) {
  emit(snapshotJSON(await client.getSnapshot(args.name)));
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

// Reconnect delays as the Python client's: exponential from 0.1 s to 30 s, full jitter.
class Backoff {
  #attempt = 0;

  next() {
    const cap = Math.min(30, 0.1 * 2 ** this.#attempt);
    this.#attempt += 1;
    return Math.random() * cap * 1000;
  }

  received() {
    this.#attempt = 0;
  }
}

const unavailable = (error) => error instanceof SSSNError && error.codeName === 'UNAVAILABLE';

async function tail(client, args, { signal }) {
  if ((args.channel === null) === (args.subscription === null)) {
    throw new UsageError(
      args.channel === null
        ? 'give a CHANNEL to follow, or --subscription ID'
        : 'give a CHANNEL or --subscription ID, not both',
    );
  }
  if (args.subscription !== null) return followSubscription(client, args, signal);
  await client.getChannel(args.channel);
  return followChannel(client, args, signal);
}

async function followSubscription(client, args, signal) {
  const backoff = new Backoff();
  const limit = int32(args.limit, 'pull');
  while (!signal.aborted) {
    try {
      for await (const event of client.follow(args.subscription, { limit, signal })) {
        backoff.received();
        emit(eventJSON(event));
      }
    } catch (error) {
      // The server restarts or is unreachable: resume from the persisted cursor.
      if (!unavailable(error)) throw error;
    }
    if (!signal.aborted) await sleep(backoff.next(), signal);
  }
}

/**
 * Reads a channel without a subscription: pages through it, then polls for
 * more. Polling is the only way to follow a channel without moving anyone's
 * cursor: the server pushes new events only on subscription streams.
 */
async function followChannel(client, args, signal) {
  let cursor = args.after_cursor;
  const backoff = new Backoff();
  while (!signal.aborted) {
    let events;
    try {
      events = await client.queryEvents(args.channel, { afterCursor: cursor, limit: 1000, kind: args.kind ?? '' });
    } catch (error) {
      if (!unavailable(error)) throw error;
      await sleep(backoff.next(), signal);
      continue;
    }
    backoff.received();
    for (const event of events) {
      emit(eventJSON(event));
      cursor = event.cursor || cursor;
    }
    if (events.length < 1000) await sleep(args.poll_interval * 1000, signal);
  }
}

// The command table, in the Python command line's order and words.

const metadataOption = { flag: '--metadata', type: jsonObject, help: 'JSON object' };

/** @type {Record<string, {summary: string, description?: string, run: Function} & import('./args.js').ParserSpec>} */
export const COMMANDS = {
  channels: { summary: 'List channels (JSON Lines, ordered by name)', run: channels },
  'create-channel': {
    summary: 'Create a channel',
    positionals: [{ dest: 'name', help: 'channel name (a path segment)' }],
    options: [
      { flag: '--schema', help: 'name of the schema its events follow' },
      { flag: '--form', default: 'log', help: 'one of the 13 forms (default: log)' },
      { flag: '--description', default: '', help: 'text for people' },
      metadataOption,
    ],
    run: createChannel,
  },
  'get-channel': { summary: 'Read one channel', positionals: [{ dest: 'name' }], run: getChannel },
  'delete-channel': {
    summary: 'Delete a channel with its events, subscriptions and snapshots',
    description:
      'Delete a channel with its events, its subscriptions, its snapshots and the records of its ' +
      'artifacts, and print how many events it held. Needs a token with the admin grant on the ' +
      'channel when the server checks tokens.',
    positionals: [{ dest: 'name' }],
    run: deleteChannel,
  },
  append: {
    summary: 'Append one JSON event to a channel',
    positionals: [{ dest: 'channel' }, { dest: 'payload', help: 'the payload as JSON, e.g. \'{"text": "hi"}\'' }],
    options: [
      { flag: '--kind', default: 'event', help: 'event type (default: event)' },
      { flag: '--source', help: 'name of the producer' },
      { flag: '--schema', help: "name of the payload's schema" },
      { flag: '--timestamp', type: float, help: 'seconds since the epoch (default: now)' },
      metadataOption,
      { flag: '--correlation-id', help: 'token grouping related events' },
      { flag: '--parent-id', dest: 'parent_ids', action: 'append', help: 'id of a parent event (repeatable)' },
      { flag: '--id', help: 'event id; makes the append safe to retry' },
    ],
    run: append,
  },
  'query-events': {
    summary: "Query a channel's events in cursor order (JSON Lines)",
    positionals: [{ dest: 'channel' }],
    options: [
      { flag: '--after-cursor', type: int, default: 0n, help: '(default: 0)' },
      { flag: '--limit', type: int, default: 100n, help: '(default: 100)' },
      { flag: '--kind', help: 'only events of this kind' },
    ],
    run: queryEvents,
  },
  'get-event': { summary: 'Read one event by id', positionals: [{ dest: 'id' }], run: getEvent },
  'create-subscription': {
    summary: 'Create or reuse a channel subscription',
    description:
      'Create a subscription at the start of a channel, or print the existing one with the same id and channel.',
    positionals: [{ dest: 'channel' }],
    options: [
      { flag: '--id', help: 'subscription id (default: minted by the server)' },
      { flag: '--consumer', help: 'token naming the consuming worker' },
      { flag: '--batch-size', type: int, default: 100n, help: '(default: 100)' },
      { flag: '--kind', help: 'deliver only events of this kind' },
      metadataOption,
    ],
    run: createSubscription,
  },
  'get-subscription': {
    summary: 'Read a subscription and its cursor',
    positionals: [{ dest: 'id' }],
    run: getSubscription,
  },
  'list-subscriptions': {
    summary: 'List subscriptions with their cursors (JSON Lines, by id)',
    options: [{ flag: '--channel', help: 'only the subscriptions of this channel' }],
    run: listSubscriptions,
  },
  'delete-subscription': {
    summary: 'Delete a subscription',
    description: 'Delete a subscription; a stream open on it ends with SUBSCRIPTION_NOT_FOUND.',
    positionals: [{ dest: 'id' }],
    run: deleteSubscription,
  },
  'seek-subscription': {
    summary: "Move a subscription's cursor back (replay) or forward (skip)",
    description:
      'Move a subscription so that the next event it delivers is the first after --cursor, or the ' +
      'first stamped at or after --timestamp; print the subscription.',
    positionals: [{ dest: 'id' }],
    options: [
      { flag: '--cursor', type: int, help: 'deliver next the first event after this cursor (0: replay)' },
      {
        flag: '--timestamp',
        type: instant,
        help:
          'deliver next the first event stamped at or after this time (seconds since the epoch, ' +
          'or RFC 3339 such as 2024-05-01T12:00:00Z)',
      },
    ],
    requiredExclusive: [['--cursor', '--timestamp']],
    run: seekSubscription,
  },
  'pull-subscription': {
    summary: 'Pull one batch of pending events from a subscription (JSON Lines)',
    description: "Pull one batch of pending events and move the subscription's cursor past them.",
    positionals: [{ dest: 'id' }],
    options: [{ flag: '--limit', type: int, help: '(default: the batch size)' }],
    run: pullSubscription,
  },
  'write-artifact': {
    summary: 'Write an artifact',
    description:
      'Store a payload given as DATA or read from --file (streamed in 1 MiB chunks); the stored ' +
      'sha256 is checked.',
    positionals: [{ dest: 'data', optional: true, help: 'the payload (see --encoding)' }],
    options: [
      { flag: '--encoding', choices: ['text', 'base64'], default: 'text', help: 'of DATA (default: text)' },
      { flag: '--file', help: 'read the payload from this file instead' },
      { flag: '--channel', help: 'channel the artifact belongs to' },
      { flag: '--media-type', default: 'application/octet-stream', help: '(default: application/octet-stream)' },
      metadataOption,
      { flag: '--event-id', dest: 'event_ids', action: 'append', help: 'id of a linked event (repeatable)' },
    ],
    run: writeArtifact,
  },
  'get-artifact': { summary: "Read an artifact's metadata", positionals: [{ dest: 'id' }], run: getArtifact },
  'read-artifact': {
    summary: "Read an artifact's payload",
    description: "Print an artifact's payload (sha256-checked).",
    positionals: [{ dest: 'id' }],
    options: [{ flag: '--encoding', choices: ['text', 'base64'], default: 'text', help: '(default: text)' }],
    run: readArtifact,
  },
  'put-snapshot': {
    summary: 'Write (replace) a named snapshot',
    positionals: [{ dest: 'name' }, { dest: 'value', help: 'the state as JSON' }],
    options: [
      { flag: '--channel', help: 'channel the state is derived from' },
      { flag: '--schema', help: "name of the value's schema" },
      { flag: '--source-event-id', help: 'id of the event the state is up to' },
      metadataOption,
    ],
    run: putSnapshot,
  },
  'get-snapshot': { summary: 'Read one snapshot', positionals: [{ dest: 'name' }], run: getSnapshot },
  tail: {
    summary: 'Follow a channel or a subscription live (JSON Lines) until Ctrl-C',
    description:
      'Print events as they arrive, one JSON line each, until Ctrl-C. A CHANNEL is read from ' +
      '--after-cursor and then polled, without moving any cursor. A subscription (--subscription ID) ' +
      'is followed on a server stream that reconnects after restarts; it moves the ' +
      "subscription's cursor, as pull-subscription does.",
    positionals: [{ dest: 'channel', metavar: 'CHANNEL', optional: true, help: 'the channel to follow' }],
    options: [
      { flag: '--subscription', metavar: 'ID', help: 'follow this subscription instead of a channel' },
      { flag: '--limit', type: int, help: 'subscription: most events per stream message' },
      { flag: '--after-cursor', type: int, default: 0n, help: 'channel: start after this cursor (default: 0)' },
      { flag: '--kind', help: 'channel: only events of this kind' },
      { flag: '--poll-interval', type: float, default: 0.5, help: 'channel: seconds between polls (0.5)' },
    ],
    run: tail,
  },
};
