// The client against a live SSSN server: results, streams and error details.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { ERROR_DOMAIN, ErrorReason, SSSNClient, SSSNError, decodeStatus } from '../src/index.js';
import { serverAddress, unique } from './server.js';

const TIMEOUT = { timeout: 20_000 };

let client;

before(async () => {
  client = new SSSNClient(await serverAddress(), { timeoutMs: 10_000 });
});

after(() => client?.close());

/** Rejects if `promise` does not settle within `ms`, naming what was awaited. */
function within(promise, what, ms = 10_000) {
  let timer;
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The SSSNError `call` rejects with (fails the test if it succeeds). */
async function failure(call) {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof SSSNError, `expected an SSSNError, got ${error}`);
    return error;
  }
  assert.fail('the call succeeded; it should have failed');
}

/** Waits until the subscription's persisted cursor reaches `cursor`. */
async function cursorReaches(id, cursor) {
  const deadline = Date.now() + 5_000;
  let current;
  do {
    current = (await client.getSubscription(id)).cursor;
    if (current === cursor) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  } while (Date.now() < deadline);
  assert.equal(current, cursor, `subscription ${id} cursor`);
}

describe('channels', () => {
  test('create and get round-trip every field', TIMEOUT, async () => {
    const name = unique('orders');
    const created = await client.createChannel({
      name,
      schema: 'demo.Order',
      form: 'latest-state',
      description: 'Latest orders',
      metadata: { team: 'sales', shards: 3, tags: ['a', 'b'], nested: { ok: true } },
    });
    assert.deepEqual(created, {
      name,
      schema: 'demo.Order',
      form: 'latest-state',
      description: 'Latest orders',
      metadata: { team: 'sales', shards: 3, tags: ['a', 'b'], nested: { ok: true } },
    });
    assert.deepEqual(await client.getChannel(name), created);
  });

  test('an unspecified form is stored as log', TIMEOUT, async () => {
    const created = await client.createChannel({ name: unique('plain') });
    assert.equal(created.form, 'log');
  });

  test('listing pages through every channel in name order', TIMEOUT, async () => {
    const names = [unique('list-a'), unique('list-b'), unique('list-c')];
    for (const name of names) await client.createChannel({ name });
    const seen = [];
    let pageToken = '';
    do {
      const page = await client.listChannels({ pageSize: 2, pageToken });
      assert.ok(page.channels.length <= 2, 'a page holds at most pageSize channels');
      seen.push(...page.channels.map((channel) => channel.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.deepEqual(seen, [...seen].sort(), 'channels are ordered by name');
    for (const name of names) assert.ok(seen.includes(name), `${name} is listed`);
  });
});

describe('events', () => {
  test('appended events come back from queries in cursor order', TIMEOUT, async () => {
    const channel = unique('events');
    await client.createChannel({ name: channel });
    const payloads = [{ text: 'hello', n: [1, 2.5, null] }, 'plain', 42, true, null, []];
    const stored = [];
    for (const [index, payload] of payloads.entries()) {
      stored.push(
        await client.appendEvent({
          channel,
          payload,
          kind: index % 2 ? 'odd' : 'even',
          source: 'node-test',
          metadata: { index },
          correlationId: 'run-1',
        }),
      );
    }
    for (const [index, event] of stored.entries()) {
      assert.equal(typeof event.cursor, 'bigint');
      assert.ok(event.id, 'the server mints an id');
      assert.ok(event.timestamp instanceof Date, 'the server sets the time');
      if (index > 0) assert.ok(event.cursor > stored[index - 1].cursor, 'cursors increase');
    }

    const all = await client.queryEvents(channel);
    assert.deepEqual(all, stored);
    assert.deepEqual(
      all.map((event) => event.payload),
      payloads,
    );
    assert.deepEqual(all[0].metadata, { index: 0 });
    assert.equal(all[0].source, 'node-test');
    assert.equal(all[0].correlationId, 'run-1');

    const page = await client.queryEvents(channel, { afterCursor: stored[1].cursor, limit: 2 });
    assert.deepEqual(
      page.map((event) => event.id),
      [stored[2].id, stored[3].id],
    );
    const odd = await client.queryEvents(channel, { kind: 'odd' });
    assert.deepEqual(
      odd.map((event) => event.id),
      [stored[1].id, stored[3].id, stored[5].id],
    );
    assert.deepEqual(await client.getEvent(stored[0].id), stored[0]);
  });

  test('re-appending an id returns the stored event unchanged', TIMEOUT, async () => {
    const channel = unique('retry');
    await client.createChannel({ name: channel });
    const id = unique('evt');
    const first = await client.appendEvent({ channel, id, payload: { try: 1 } });
    const again = await client.appendEvent({ channel, id, payload: { try: 2 } });
    assert.deepEqual(again, first);
    assert.equal((await client.queryEvents(channel)).length, 1);
  });

  test('a batch with one bad event stores nothing', TIMEOUT, async () => {
    const channel = unique('batch');
    await client.createChannel({ name: channel });
    const error = await failure(() =>
      client.appendEvents([
        { channel, payload: 1 },
        { channel, payload: 2, parentIds: [unique('missing')] },
      ]),
    );
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.equal(error.reason, ErrorReason.EVENT_NOT_FOUND);
    assert.deepEqual(await client.queryEvents(channel), []);

    const stored = await client.appendEvents([
      { channel, payload: 1 },
      { channel, payload: 2 },
    ]);
    assert.ok(stored[1].cursor > stored[0].cursor);
    assert.deepEqual(await client.queryEvents(channel), stored);
  });
});

describe('append streams', () => {
  test('each event is stored or refused alone, in order', TIMEOUT, async () => {
    const channel = unique('stream');
    await client.createChannel({ name: channel });
    async function* events() {
      yield { channel, payload: 1, id: unique('s1') };
      yield { channel: unique('missing'), payload: 2 };
      yield { channel, payload: 3 };
    }
    const results = [];
    for await (const result of client.appendEventStream(events(), { batchSize: 2 })) results.push(result);
    assert.equal(results.length, 3);
    assert.equal(results[0].payload, 1);
    assert.ok(results[1] instanceof SSSNError);
    assert.equal(results[1].reason, 'CHANNEL_NOT_FOUND');
    assert.ok(results[2].cursor > results[0].cursor);
    assert.deepEqual(
      (await client.queryEvents(channel)).map((event) => event.payload),
      [1, 3],
    );
  });
});

describe('subscriptions', () => {
  test('a following stream receives events appended after it opened', TIMEOUT, async () => {
    const channel = unique('live');
    await client.createChannel({ name: channel });
    const id = unique('worker');
    const subscription = await client.createSubscription({ channel, id, consumer: 'node' });
    assert.equal(subscription.cursor, 0n);
    const pending = await client.appendEvent({ channel, payload: 'before' });

    const stream = client.follow(id);
    // The pending event arrives first, so the stream is open on the server
    // before anything else is appended.
    const first = await within(stream.next(), 'the pending event');
    assert.equal(first.value.id, pending.id);

    const later = await client.appendEvents([
      { channel, payload: { n: 1 } },
      { channel, payload: { n: 2 } },
    ]);
    const second = await within(stream.next(), 'the first event appended after opening');
    const third = await within(stream.next(), 'the second event appended after opening');
    assert.deepEqual(
      [second.value, third.value].map((event) => [event.id, event.cursor, event.payload]),
      later.map((event) => [event.id, event.cursor, event.payload]),
    );
    await stream.return();

    // The cursor is persisted: following again resumes after the last event.
    await cursorReaches(id, later[1].cursor);
    const resumed = client.follow(id);
    const next = await client.appendEvent({ channel, payload: 'after reconnect' });
    const fourth = await within(resumed.next(), 'the event appended before resuming');
    assert.equal(fourth.value.id, next.id);
    await resumed.return();
  });

  test('manual acks move the cursor, and a taken-over stream cannot ack', TIMEOUT, async () => {
    const channel = unique('manual');
    await client.createChannel({ name: channel });
    const id = unique('acker');
    await client.createSubscription({ channel, id });
    const stored = await client.appendEvents([
      { channel, payload: 1 },
      { channel, payload: 2 },
    ]);
    const first = client.follow(id, { ackMode: 'manual' });
    const delivered = (await within(first.next(), 'the first delivery')).value;
    assert.equal(delivered.id, stored[0].id);
    assert.ok(delivered.leaseEpoch > 0n, 'a following stream holds a lease');
    const acked = await client.ack(id, delivered);
    assert.equal(acked.cursor, stored[0].cursor);
    // A second stream takes the subscription over and gets what was not acknowledged.
    const second = client.follow(id, { ackMode: 'manual' });
    const again = (await within(second.next(), 'the redelivery')).value;
    assert.equal(again.id, stored[1].id);
    assert.ok(again.leaseEpoch > delivered.leaseEpoch);
    const refused = await failure(() => client.ack(id, { ...again, leaseEpoch: delivered.leaseEpoch }));
    assert.equal(refused.reason, 'SUBSCRIPTION_LEASE_LOST');
    assert.equal((await client.getSubscription(id)).cursor, stored[0].cursor);
    assert.equal((await client.ack(id, again)).cursor, stored[1].cursor);
    await second.return();
    await first.return();
  });

  test('a kind filter delivers only matching events', TIMEOUT, async () => {
    const channel = unique('filtered');
    await client.createChannel({ name: channel });
    const id = unique('alerts');
    await client.createSubscription({ channel, id, kind: 'alert' });
    const stop = new AbortController();
    const stream = client.follow(id, { signal: stop.signal });
    await client.appendEvent({ channel, kind: 'noise', payload: 1 });
    const alert = await client.appendEvent({ channel, kind: 'alert', payload: 2 });
    const first = await within(stream.next(), 'the matching event');
    assert.equal(first.value.id, alert.id);
    stop.abort();
    const end = await within(stream.next(), 'the end of the aborted stream');
    assert.equal(end.done, true, 'aborting ends the iteration without an error');
  });

  test('pull delivers pending events once', TIMEOUT, async () => {
    const channel = unique('pull');
    await client.createChannel({ name: channel });
    const id = unique('puller');
    await client.createSubscription({ channel, id, batchSize: 2 });
    const stored = await client.appendEvents([1, 2, 3].map((payload) => ({ channel, payload })));
    const firstPull = await client.pull(id, { limit: 2 });
    assert.deepEqual(
      firstPull.map((event) => event.id),
      [stored[0].id, stored[1].id],
    );
    const secondPull = await client.pull(id);
    assert.deepEqual(
      secondPull.map((event) => event.id),
      [stored[2].id],
    );
    assert.deepEqual(await client.pull(id), []);
  });
});

describe('artifacts and snapshots', () => {
  test('an artifact is stored content-addressed and read back whole', TIMEOUT, async () => {
    const data = Buffer.from('artifact payload '.repeat(1000));
    const artifact = await client.writeArtifact(data, {
      mediaType: 'text/plain',
      metadata: { origin: 'node' },
    });
    assert.equal(artifact.size, BigInt(data.length));
    assert.equal(artifact.sha256, createHash('sha256').update(data).digest('hex'));
    const read = await client.readArtifact(artifact.id);
    assert.deepEqual(read.artifact, artifact);
    assert.ok(read.data.equals(data));
  });

  test('a snapshot is replaced by the next put', TIMEOUT, async () => {
    const name = unique('state');
    await client.putSnapshot({ name, value: { version: 1 } });
    await client.putSnapshot({ name, value: { version: 2 }, metadata: { by: 'node' } });
    const snapshot = await client.getSnapshot(name);
    assert.deepEqual(snapshot.value, { version: 2 });
    assert.deepEqual(snapshot.metadata, { by: 'node' });
    assert.ok(snapshot.timestamp instanceof Date);
  });
});

describe('errors', () => {
  test('a missing channel is NOT_FOUND with reason, domain and resource', TIMEOUT, async () => {
    const name = unique('nope');
    const error = await failure(() => client.getChannel(name));
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.equal(error.codeName, 'NOT_FOUND');
    assert.equal(error.reason, ErrorReason.CHANNEL_NOT_FOUND);
    assert.equal(error.reason, 'CHANNEL_NOT_FOUND');
    assert.equal(error.domain, ERROR_DOMAIN);
    assert.deepEqual(error.metadata, { channel: name });

    // The same details, decoded by hand from the grpc-js error.
    const status = decodeStatus(error.cause);
    assert.equal(status.code, grpc.status.NOT_FOUND);
    assert.deepEqual(
      status.details.map((detail) => detail.type),
      ['google.rpc.ErrorInfo'],
    );
    assert.deepEqual(status.details[0].value, {
      reason: 'CHANNEL_NOT_FOUND',
      domain: 'sssn.dev',
      metadata: { channel: name },
    });
  });

  test('creating an existing channel is ALREADY_EXISTS', TIMEOUT, async () => {
    const name = unique('dup');
    await client.createChannel({ name, description: 'first' });
    const error = await failure(() => client.createChannel({ name, description: 'second' }));
    assert.equal(error.code, grpc.status.ALREADY_EXISTS);
    assert.equal(error.reason, ErrorReason.CHANNEL_EXISTS);
    assert.deepEqual(error.metadata, { channel: name });
    assert.equal((await client.getChannel(name)).description, 'first');
  });

  test('bad input is INVALID_ARGUMENT naming each bad field', TIMEOUT, async () => {
    const error = await failure(() => client.createChannel({ name: 'a b' }));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(error.reason, ErrorReason.INVALID_PAYLOAD);
    assert.deepEqual(
      error.fieldViolations.map((violation) => violation.field),
      ['channel.name'],
    );
    const channel = unique('limits');
    await client.createChannel({ name: channel });
    const limit = await failure(() => client.queryEvents(channel, { limit: 0 }));
    assert.equal(limit.reason, ErrorReason.INVALID_PAYLOAD);
    assert.deepEqual(
      limit.fieldViolations.map((violation) => violation.field),
      ['limit'],
    );
  });

  test('a stream over a missing subscription fails with its reason', TIMEOUT, async () => {
    const id = unique('ghost');
    const error = await failure(async () => {
      for await (const _event of client.follow(id)) assert.fail('no event can arrive');
    });
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.equal(error.reason, ErrorReason.SUBSCRIPTION_NOT_FOUND);
    assert.deepEqual(error.metadata, { subscription_id: id });
  });

  test('an unreachable server is UNAVAILABLE without a reason', TIMEOUT, async () => {
    const offline = new SSSNClient('127.0.0.1:1', { timeoutMs: 5_000 });
    try {
      const error = await failure(() => offline.getChannel('any'));
      assert.equal(error.code, grpc.status.UNAVAILABLE);
      assert.equal(error.reason, '');
    } finally {
      offline.close();
    }
  });
});

describe('subscription admin', () => {
  test('list pages through subscriptions by id, optionally of one channel', TIMEOUT, async () => {
    const channel = unique('admin');
    const other = unique('admin-other');
    await client.createChannel({ name: channel });
    await client.createChannel({ name: other });
    const ids = [unique('sub-a'), unique('sub-b'), unique('sub-c')];
    for (const id of ids) await client.createSubscription({ channel, id, consumer: 'pool' });
    await client.createSubscription({ channel: other, id: unique('sub-other') });
    const seen = [];
    let pageToken = '';
    do {
      const page = await client.listSubscriptions({ channel, pageSize: 2, pageToken });
      assert.ok(page.subscriptions.length <= 2, 'a page holds at most pageSize subscriptions');
      seen.push(...page.subscriptions);
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.deepEqual(
      seen.map((subscription) => subscription.id),
      [...ids].sort(),
    );
    assert.deepEqual(seen[0], await client.getSubscription(seen[0].id));
    const everyone = await client.listSubscriptions({ pageSize: 1000 });
    assert.ok(everyone.subscriptions.some((subscription) => subscription.channel === other));
    const error = await failure(() => client.listSubscriptions({ channel: unique('nowhere') }));
    assert.equal(error.reason, ErrorReason.CHANNEL_NOT_FOUND);
  });

  test('seek moves the cursor back and forward, by cursor or by time', TIMEOUT, async () => {
    const channel = unique('seek');
    await client.createChannel({ name: channel });
    const stored = await client.appendEvents(
      [0, 1, 2, 3].map((n) => ({ channel, payload: n, timestamp: 1_700_000_000_000n * 1_000_000n + BigInt(n) })),
    );
    assert.equal(stored[1].timestampNanos, 1_700_000_000_000_000_001n, 'nanoseconds survive');
    const id = unique('seeker');
    await client.createSubscription({ channel, id });
    const moved = await client.seekSubscription(id, { cursor: stored[2].cursor });
    assert.equal(moved.cursor, stored[2].cursor);
    assert.deepEqual(
      (await client.pull(id)).map((event) => event.payload),
      [3],
    );
    await client.seekSubscription(id, { timestamp: stored[1].timestampNanos });
    assert.deepEqual(
      (await client.pull(id)).map((event) => event.payload),
      [1, 2, 3],
    );
    await client.seekSubscription(id, { cursor: 0 });
    assert.equal((await client.getSubscription(id)).cursor, 0n);
    const neither = await failure(() => client.seekSubscription(id, {}));
    assert.equal(neither.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(neither.reason, ErrorReason.INVALID_PAYLOAD);
    const backwards = await failure(() => client.seekSubscription(id, { cursor: -1 }));
    assert.equal(backwards.reason, ErrorReason.INVALID_PAYLOAD);
  });

  test('delete removes a subscription and ends its stream', TIMEOUT, async () => {
    const channel = unique('delete-sub');
    await client.createChannel({ name: channel });
    const id = unique('doomed');
    await client.createSubscription({ channel, id });
    const stream = client.follow(id);
    const pending = await client.appendEvent({ channel, payload: 'first' });
    assert.equal((await within(stream.next(), 'the first event')).value.id, pending.id);
    await client.deleteSubscription(id);
    const ended = await failure(() => within(stream.next(), 'the end of the stream'));
    assert.equal(ended.reason, ErrorReason.SUBSCRIPTION_NOT_FOUND);
    const again = await failure(() => client.deleteSubscription(id));
    assert.equal(again.reason, ErrorReason.SUBSCRIPTION_NOT_FOUND);
    assert.equal((await failure(() => client.getSubscription(id))).reason, ErrorReason.SUBSCRIPTION_NOT_FOUND);
  });
});

describe('deleting, artifacts and local checks', () => {
  test('deleting a channel removes it and says how many events it held', TIMEOUT, async () => {
    const channel = unique('doomed-channel');
    await client.createChannel({ name: channel });
    await client.appendEvents([1, 2].map((payload) => ({ channel, payload })));
    assert.equal(await client.deleteChannel(channel), 2n);
    assert.equal((await failure(() => client.getChannel(channel))).reason, ErrorReason.CHANNEL_NOT_FOUND);
  });

  test('a payload over 2 MiB is streamed and checked', TIMEOUT, async () => {
    const data = Buffer.alloc(5 * 1024 * 1024 + 3, 9);
    const artifact = await client.writeArtifact(data, { metadata: { big: true } });
    assert.equal(artifact.size, BigInt(data.length));
    assert.equal(artifact.mediaType, 'application/octet-stream');
    assert.deepEqual(await client.getArtifact(artifact.id), artifact);
    const chunks = (async function* chunked() {
      yield data.subarray(0, 1000);
      yield data.subarray(1000);
    })();
    const streamed = await client.writeArtifact(chunks);
    assert.equal(streamed.sha256, artifact.sha256);
    const read = await client.readArtifact(artifact.id);
    assert.ok(read.data.equals(data));
    assert.equal((await failure(() => client.getArtifact(unique('no-artifact')))).reason, ErrorReason.ARTIFACT_NOT_FOUND);
  });

  test('input the client cannot send is INVALID_ARGUMENT before any call', TIMEOUT, async () => {
    const form = await failure(() => client.createChannel({ name: unique('form'), form: 'spreadsheet' }));
    assert.equal(form.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(form.reason, ErrorReason.INVALID_PAYLOAD);
    assert.deepEqual(
      form.fieldViolations.map((violation) => violation.field),
      ['channel.form'],
    );
    for (const target of ['', 'x:abc', 'ftp://x:1', 'http://x:1/prefix']) {
      assert.throws(
        () => new SSSNClient(target),
        (error) => error instanceof SSSNError && error.fieldViolations[0].field === 'target',
        target,
      );
    }
    const viaUrl = new SSSNClient(`http://${await serverAddress()}`);
    try {
      assert.ok((await viaUrl.listChannels()).channels.length > 0, 'http://host:port is plain text');
    } finally {
      viaUrl.close();
    }
  });
});
