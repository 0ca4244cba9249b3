// Python's spellings of values, which the command line prints and words its
// errors with (no server needed; tests/test_cli_parity.py checks them against
// the Python command line itself).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Float, JSONDecodeError, dumps, floatFromText, floatRepr, intFromText, loads, repr } from '../src/python.js';

test('floats are written as Python writes them', () => {
  const cases = [
    [1, '1.0'],
    [-0, '-0.0'],
    [0.1, '0.1'],
    [1.5e-7, '1.5e-07'],
    [0.0001, '0.0001'],
    [1e16, '1e+16'],
    [1234567890123456, '1234567890123456.0'],
    [1700000000.0166206, '1700000000.0166206'],
    [1.7976931348623157e308, '1.7976931348623157e+308'],
    [5e-324, '5e-324'],
    [NaN, 'NaN'],
    [-Infinity, '-Infinity'],
  ];
  for (const [number, text] of cases) assert.equal(floatRepr(number), text, String(number));
});

test('JSON is written compact, numbers as the Python client reads them', () => {
  assert.equal(
    dumps({ a: [1, 2.5, 1e16, null, true, 'é\u0001"'], t: new Float(1700000000), c: 2n ** 64n }),
    '{"a":[1,2.5,1e+16,null,true,"é\\u0001\\""],"t":1700000000.0,"c":18446744073709551616}',
  );
});

test('JSON is read as Python reads it, and refused with its messages', () => {
  assert.deepEqual(loads(' {"a": [1, -2.5e3, "\\ud83d\\ude00"], "__proto__": null} '), {
    a: [1, -2500, '😀'],
    ['__proto__']: null,
  });
  assert.ok(Number.isNaN(loads('NaN')));
  assert.equal(loads('-Infinity'), -Infinity);
  for (const [text, message] of [
    ['', 'Expecting value'],
    ['[1,]', 'Expecting value'],
    ['01', 'Extra data'],
    ['{"a" 1}', "Expecting ':' delimiter"],
    ['{"a": 1,}', 'Expecting property name enclosed in double quotes'],
    ['[1 2]', "Expecting ',' delimiter"],
    ['"abc', 'Unterminated string starting at'],
    ['"\\q"', 'Invalid \\escape'],
    ['"\\u12"', 'Invalid \\uXXXX escape'],
    ['"\\u00e9', 'Invalid \\uXXXX escape'],
    ['"a\u0001"', 'Invalid control character at'],
  ]) {
    assert.throws(() => loads(text), (error) => error instanceof JSONDecodeError && error.message === message, text);
  }
});

test('numbers and strings are read and quoted as Python does', () => {
  assert.equal(intFromText(' +1_000 '), 1000n);
  assert.equal(intFromText('99999999999999999999'), 99999999999999999999n);
  assert.equal(intFromText('1.0'), null);
  assert.equal(floatFromText('1e9'), 1e9);
  assert.equal(floatFromText('-inf'), -Infinity);
  assert.equal(floatFromText('0x10'), null);
  assert.equal(repr("it's"), `"it's"`);
  assert.equal(repr('a\nb'), "'a\\nb'");
});
