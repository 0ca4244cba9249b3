// Python's spellings of values (repr, float, int, json), so that this package
// words its messages and prints its results byte for byte as the Python client
// and its `sssn` command line do.

/** A number that Python holds as a float: printed `1700000000.0`, never `1700000000`. */
export class Float {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
}

/**
 * `repr(text)` for a Python str: single quotes unless the text holds one and
 * no double quote; backslashes, the quote and unprintable characters escaped.
 *
 * @param {string} text
 * @returns {string}
 */
export function repr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0);
    if (char === quote || char === '\\') out += `\\${char}`;
    else if (char === '\n') out += '\\n';
    else if (char === '\r') out += '\\r';
    else if (char === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += char;
  }
  return `${quote}${out}${quote}`;
}

/**
 * `repr(x)` for a Python float: the shortest digits that read back as `x`
 * (as JavaScript also picks them), in Python's layout: `1.0`, `1e+16`,
 * `1e-05`, `0.0001`. Non-finite values are spelled as `json.dumps` writes them.
 *
 * @param {number} x
 * @returns {string}
 */
export function floatRepr(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const point = Number(exponent) + 1; // digits before the decimal point
  // Python writes a float without an exponent while -4 < point <= 16.
  if (point > -4 && point <= 16) {
    if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
    if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  }
  const power = point - 1;
  const lead = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${lead}e${power < 0 ? '-' : '+'}${String(Math.abs(power)).padStart(2, '0')}`;
}

const INT = /^\s*[+-]?\d(?:_?\d)*\s*$/;
const FLOAT = /^\s*[+-]?(?:(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?|inf|infinity|nan)\s*$/i;

/**
 * Python's `int(text)`: the integer, exact at any size, or null when Python
 * would refuse the text.
 *
 * @param {string} text
 * @returns {bigint | null}
 */
export function intFromText(text) {
  if (!INT.test(text)) return null;
  return BigInt(text.trim().replaceAll('_', ''));
}

/**
 * Python's `float(text)`: the number, or null when Python would refuse the text.
 *
 * @param {string} text
 * @returns {number | null}
 */
export function floatFromText(text) {
  if (!FLOAT.test(text)) return null;
  const plain = text.trim().replaceAll('_', '').toLowerCase();
  const sign = plain.startsWith('-') ? -1 : 1;
  const unsigned = plain.replace(/^[+-]/, '');
  if (unsigned === 'inf' || unsigned === 'infinity') return sign * Infinity;
  if (unsigned === 'nan') return NaN;
  return Number(plain);
}

/**
 * `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` of the value
 * the Python client would hold: a JSON number that is a whole number below
 * 2^53 is an int, any other is a float (as the client reads
 * `google.protobuf.Value`), a bigint is an int, a `Float` is a float.
 *
 * @param {unknown} value
 * @returns {string}
 */
export function dumps(value) {
  if (value === null || value === undefined) return 'null';
  if (value instanceof Float) return floatRepr(value.value);
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'number':
      return Number.isInteger(value) && Math.abs(value) < 2 ** 53 ? String(value) : floatRepr(value);
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    default:
      break;
  }
  if (Array.isArray(value)) return `[${value.map(dumps).join(',')}]`;
  const members = Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}:${dumps(item)}`);
  return `{${members.join(',')}}`;
}

/** A text `json.loads` refuses; `message` is Python's `JSONDecodeError.msg`. */
export class JSONDecodeError extends Error {}

const WHITESPACE = /[ \t\n\r]*/y;
const NUMBER = /(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?/y;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * Python's `json.loads(text)`: the same values (NaN, Infinity and -Infinity
 * included) and, for text it refuses, a `JSONDecodeError` with the same
 * message as Python's (without the position).
 *
 * @param {string} text
 * @returns {unknown}
 */
export function loads(text) {
  if (text.startsWith('\ufeff')) throw new JSONDecodeError('Unexpected UTF-8 BOM (decode using utf-8-sig)');
  const reader = new Reader(text);
  reader.skipWhitespace();
  const value = reader.value();
  reader.skipWhitespace();
  if (reader.index !== text.length) throw new JSONDecodeError('Extra data');
  return value;
}

// A recursive-descent reader that fails where, and as, CPython's json scanner does.
class Reader {
  constructor(text) {
    this.text = text;
    this.index = 0;
  }

  skipWhitespace() {
    WHITESPACE.lastIndex = this.index;
    WHITESPACE.exec(this.text);
    this.index = WHITESPACE.lastIndex;
  }

  startsWith(word) {
    return this.text.startsWith(word, this.index);
  }

  value() {
    const char = this.text[this.index];
    if (char === '"') return this.string();
    if (char === '{') return this.object();
    if (char === '[') return this.array();
    for (const [word, value] of [
      ['null', null],
      ['true', true],
      ['false', false],
      ['NaN', NaN],
      ['Infinity', Infinity],
      ['-Infinity', -Infinity],
    ]) {
      if (this.startsWith(word)) {
        this.index += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.index;
    const match = NUMBER.exec(this.text);
    if (!match) throw new JSONDecodeError('Expecting value');
    this.index = NUMBER.lastIndex;
    return Number(match[0]);
  }

  string() {
    const text = this.text;
    let index = this.index + 1;
    let out = '';
    for (;;) {
      if (index >= text.length) throw new JSONDecodeError('Unterminated string starting at');
      const char = text[index];
      if (char === '"') break;
      if (char < ' ') throw new JSONDecodeError('Invalid control character at');
      if (char !== '\\') {
        out += char;
        index += 1;
        continue;
      }
      const escape = text[index + 1];
      if (escape === undefined) throw new JSONDecodeError('Unterminated string starting at');
      if (escape !== 'u') {
        if (!(escape in ESCAPES)) throw new JSONDecodeError('Invalid \\escape');
        out += ESCAPES[escape];
        index += 2;
        continue;
      }
      // CPython wants a character after the four digits (the closing quote at least).
      if (index + 6 >= text.length) throw new JSONDecodeError('Invalid \\uXXXX escape');
      let unit = hex4(text, index + 2);
      index += 6;
      // A high surrogate escape followed by a low one is one character, as in Python.
      if (unit >= 0xd800 && unit <= 0xdbff && index + 6 < text.length && text.startsWith('\\u', index)) {
        const low = hex4(text, index + 2);
        if (low >= 0xdc00 && low <= 0xdfff) {
          unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
          index += 6;
        }
      }
      out += String.fromCodePoint(unit);
    }
    this.index = index + 1;
    return out;
  }

  object() {
    const result = {};
    this.index += 1;
    this.skipWhitespace();
    if (this.text[this.index] === '}') {
      this.index += 1;
      return result;
    }
    for (;;) {
      if (this.text[this.index] !== '"') {
        throw new JSONDecodeError('Expecting property name enclosed in double quotes');
      }
      const key = this.string();
      this.skipWhitespace();
      if (this.text[this.index] !== ':') throw new JSONDecodeError("Expecting ':' delimiter");
      this.index += 1;
      this.skipWhitespace();
      // defineProperty: a key named __proto__ is data, not the object's prototype.
      Object.defineProperty(result, key, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.skipWhitespace();
      const next = this.text[this.index];
      this.index += 1;
      if (next === '}') return result;
      if (next !== ',') throw new JSONDecodeError("Expecting ',' delimiter");
      this.skipWhitespace();
    }
  }

  array() {
    const result = [];
    this.index += 1;
    this.skipWhitespace();
    if (this.text[this.index] === ']') {
      this.index += 1;
      return result;
    }
    for (;;) {
      result.push(this.value());
      this.skipWhitespace();
      const next = this.text[this.index];
      this.index += 1;
      if (next === ']') return result;
      if (next !== ',') throw new JSONDecodeError("Expecting ',' delimiter");
      this.skipWhitespace();
    }
  }
}

function hex4(text, start) {
  const digits = text.slice(start, start + 4);
  if (!/^[0-9a-fA-F]{4}$/.test(digits)) throw new JSONDecodeError('Invalid \\uXXXX escape');
  return Number.parseInt(digits, 16);
}
