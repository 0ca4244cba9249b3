// Conversions between JavaScript values and google.protobuf Value, Struct,
// Timestamp and int64 (no server needed).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  fromStruct,
  fromTimestamp,
  fromTimestampNanos,
  fromValue,
  stringify,
  toInt64,
  toStruct,
  toTimestamp,
  toValue,
} from '../src/json.js';

test('JSON values survive a round trip through google.protobuf.Value', () => {
  const samples = [null, true, false, 0, -1.5, 'text', '', [], [1, 'two', null, [3]], { a: { b: [true] } }];
  for (const sample of samples) assert.deepEqual(fromValue(toValue(sample)), sample);
});

test('undefined and unset values are JSON null', () => {
  assert.deepEqual(toValue(undefined), { nullValue: 'NULL_VALUE' });
  assert.equal(fromValue(undefined), null);
  assert.equal(fromValue({}), null);
});

test('objects with toJSON are sent as JSON.stringify would', () => {
  const when = new Date('2024-05-06T07:08:09.010Z');
  assert.equal(fromValue(toValue({ when })).when, '2024-05-06T07:08:09.010Z');
});

test('values JSON cannot hold are refused', () => {
  assert.throws(() => toValue(1n), TypeError);
  assert.throws(() => toValue(() => 1), TypeError);
  assert.throws(() => toStruct([1]), TypeError);
});

test('metadata is a plain object, empty when unset', () => {
  assert.deepEqual(toStruct(undefined), { fields: {} });
  assert.deepEqual(fromStruct(undefined), {});
  assert.deepEqual(fromStruct(toStruct({ team: 'a', n: 2 })), { team: 'a', n: 2 });
});

test('timestamps keep millisecond precision, before 1970 too', () => {
  for (const iso of ['2024-05-06T07:08:09.010Z', '1969-12-31T23:59:59.999Z', '1970-01-01T00:00:00.000Z']) {
    const timestamp = toTimestamp(iso);
    assert.ok(timestamp.nanos >= 0 && timestamp.nanos < 1e9, 'nanos are never negative');
    assert.equal(fromTimestamp(timestamp).toISOString(), iso);
  }
  assert.equal(toTimestamp(undefined), undefined);
  assert.equal(fromTimestamp(null), null);
  assert.throws(() => toTimestamp('not a date'), TypeError);
});

test('int64 values keep every digit', () => {
  assert.equal(toInt64(9007199254740993n), '9007199254740993');
  assert.equal(toInt64(12), '12');
  assert.equal(toInt64('0'), '0');
  assert.throws(() => toInt64(1.5), TypeError);
  assert.equal(stringify({ cursor: 7n }), '{"cursor":7}');
  assert.equal(stringify({ cursor: 9007199254740993n }), '{"cursor":"9007199254740993"}');
});

test('timestamps: bigint nanoseconds and {seconds, nanos} keep every digit', () => {
  assert.deepEqual(toTimestamp(1_700_000_000_123_456_789n), { seconds: '1700000000', nanos: 123_456_789 });
  assert.deepEqual(toTimestamp(-1n), { seconds: '-1', nanos: 999_999_999 });
  assert.deepEqual(toTimestamp({ seconds: 5n, nanos: 7 }), { seconds: '5', nanos: 7 });
  assert.equal(fromTimestampNanos({ seconds: '-1', nanos: 999_999_999 }), -1n);
  assert.equal(fromTimestampNanos(null), null);
  assert.throws(() => toTimestamp({ seconds: 1, nanos: 1e9 }), TypeError);
});
