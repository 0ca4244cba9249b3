// A command line parser with argparse's rules and messages, so that the Node
// `sssn` accepts and refuses the same command lines as the Python one.

import { floatFromText, intFromText, repr } from '../python.js';

/** A command line that cannot be run; `message` is what argparse would say. */
export class UsageError extends Error {}

/**
 * The type of an option's value: a converter throwing `ArgumentTypeError`
 * (its message is shown as is) or returning the value.
 */
export class ArgumentTypeError extends Error {}

/** Python's `int`: a bigint, so cursors keep every digit. */
export function int(raw) {
  const value = intFromText(raw);
  if (value === null) throw new ArgumentTypeError(`invalid int value: ${repr(raw)}`);
  return value;
}

/** Python's `float`. */
export function float(raw) {
  const value = floatFromText(raw);
  if (value === null) throw new ArgumentTypeError(`invalid float value: ${repr(raw)}`);
  return value;
}

// argparse takes these for values, not for options.
const NEGATIVE_NUMBER = /^-\d+$|^-\d*\.\d+$/;

// Whether argparse reads `arg` as an option (known or not) rather than a value.
function looksLikeOption(arg, options) {
  if (arg.length < 2 || !arg.startsWith('-') || NEGATIVE_NUMBER.test(arg)) return false;
  if (!arg.includes(' ')) return true;
  const name = arg.split('=', 1)[0];
  return options.some((option) => option.flag === name);
}

/**
 * @typedef {object} OptionSpec
 * @property {string} flag such as `--after-cursor`
 * @property {string} [dest] the key of its value (default: the flag in snake_case)
 * @property {'store' | 'store_true' | 'append' | 'help' | 'version'} [action]
 * @property {(raw: string) => unknown} [type]
 * @property {string[]} [choices]
 * @property {unknown} [default]
 * @property {string} [metavar]
 * @property {string} [help]
 */

/**
 * @typedef {object} PositionalSpec
 * @property {string} dest
 * @property {boolean} [optional] argparse's nargs='?'
 * @property {string} [metavar]
 * @property {string} [help]
 */

/**
 * @typedef {object} ParserSpec
 * @property {string} prog such as `sssn append`
 * @property {PositionalSpec[]} [positionals]
 * @property {OptionSpec[]} [options]
 * @property {string[][]} [exclusive] groups of flags given at most once together
 * @property {string[][]} [requiredExclusive] groups of which exactly one flag is needed
 * @property {{dest: string, choices: string[]}} [command] a COMMAND positional that
 *   ends this parser's arguments: the rest belongs to the command
 */

/** The key of an option's value. */
export function destOf(option) {
  return option.dest ?? option.flag.replace(/^-+/, '').replaceAll('-', '_');
}

/**
 * Parses `argv` as argparse parses it with `parse_known_args` and then
 * refuses what is left over: options anywhere, `--flag=value`, unique
 * prefixes of long flags, negative numbers as values, `--` before positionals.
 *
 * @param {ParserSpec} spec
 * @param {string[]} argv
 * @param {{known?: boolean}} [how] `known`: return what is not recognized as
 *   `extras` (as argparse's `parse_known_args`) instead of refusing it
 * @returns {{values: Record<string, unknown>, rest: string[], extras: string[], help?: boolean, version?: boolean}}
 *   `rest`: the arguments after the COMMAND, for the command's parser
 * @throws {UsageError}
 */
export function parse(spec, argv, { known = false } = {}) {
  const options = [HELP, ...(spec.options ?? [])];
  const values = {};
  for (const option of options) {
    if (option.action === 'help' || option.action === 'version') continue;
    values[destOf(option)] = option.action === 'store_true' ? (option.default ?? false) : (option.default ?? null);
  }
  const seen = [];
  const positionals = [];
  const extras = [];
  let rest = [];
  let index = 0;
  let onlyPositionals = false;
  while (index < argv.length) {
    const arg = argv[index];
    index += 1;
    if (!onlyPositionals && arg === '--') {
      onlyPositionals = true;
      continue;
    }
    if (onlyPositionals || !looksLikeOption(arg, options)) {
      if (spec.command && positionals.length === 0) {
        if (!spec.command.choices.includes(arg)) {
          const choices = spec.command.choices.map(repr).join(', ');
          throw new UsageError(`argument ${spec.command.dest}: invalid choice: ${repr(arg)} (choose from ${choices})`);
        }
        positionals.push(arg);
        rest = argv.slice(index);
        break;
      }
      positionals.push(arg);
      continue;
    }
    const equals = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = equals > 0 ? arg.slice(0, equals) : arg;
    const inline = equals > 0 ? arg.slice(equals + 1) : undefined;
    const option = match(options, name);
    if (!option) {
      extras.push(arg);
      continue;
    }
    if (option.action === 'help') return { values, rest: [], extras: [], help: true };
    if (option.action === 'version') return { values, rest: [], extras: [], version: true };
    const dest = destOf(option);
    if (option.action === 'store_true') {
      if (inline !== undefined) {
        throw new UsageError(`argument ${option.flag}: ignored explicit argument ${repr(inline)}`);
      }
      checkExclusive(spec, option, seen);
      seen.push(option.flag);
      values[dest] = true;
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (index >= argv.length || looksLikeOption(argv[index], options) || argv[index] === '--') {
        throw new UsageError(`argument ${option.flag}: expected one argument`);
      }
      raw = argv[index];
      index += 1;
    }
    const value = convert(option, raw);
    checkExclusive(spec, option, seen);
    seen.push(option.flag);
    if (option.action === 'append') values[dest] = [...(values[dest] ?? []), value];
    else values[dest] = value;
  }

  const missing = [];
  const queue = [...positionals];
  for (const positional of spec.positionals ?? []) {
    if (queue.length) values[positional.dest] = queue.shift();
    else if (positional.optional) values[positional.dest] = null;
    else missing.push(positional.metavar ?? positional.dest);
  }
  if (spec.command) {
    if (queue.length) values[spec.command.dest] = queue.shift();
    else missing.push(spec.command.dest);
  }
  if (missing.length) throw new UsageError(`the following arguments are required: ${missing.join(', ')}`);
  for (const group of spec.requiredExclusive ?? []) {
    if (!group.some((flag) => seen.includes(flag))) {
      throw new UsageError(`one of the arguments ${group.join(' ')} is required`);
    }
  }
  extras.push(...queue);
  if (extras.length && !known) throw new UsageError(`unrecognized arguments: ${extras.join(' ')}`);
  return { values, rest, extras };
}

// Every parser has it, as argparse's do.
const HELP = { flag: '--help', action: 'help' };

// The option `name` names: exactly, or as the unique prefix of one long flag.
function match(options, name) {
  if (name === '-h') return HELP;
  const exact = options.find((option) => option.flag === name);
  if (exact || !name.startsWith('--')) return exact;
  const candidates = options.filter((option) => option.flag.startsWith(name));
  if (candidates.length > 1) {
    const flags = candidates.map((option) => option.flag).join(', ');
    throw new UsageError(`ambiguous option: ${name} could match ${flags}`);
  }
  return candidates[0];
}

function checkExclusive(spec, option, seen) {
  for (const group of [...(spec.exclusive ?? []), ...(spec.requiredExclusive ?? [])]) {
    if (!group.includes(option.flag)) continue;
    const other = seen.find((flag) => flag !== option.flag && group.includes(flag));
    if (other) throw new UsageError(`argument ${option.flag}: not allowed with argument ${other}`);
  }
}

function convert(option, raw) {
  let value = raw;
  if (option.type) {
    try {
      value = option.type(raw);
    } catch (error) {
      if (error instanceof ArgumentTypeError) throw new UsageError(`argument ${option.flag}: ${error.message}`);
      throw error;
    }
  }
  if (option.choices && !option.choices.includes(value)) {
    const choices = option.choices.map(repr).join(', ');
    throw new UsageError(`argument ${option.flag}: invalid choice: ${repr(value)} (choose from ${choices})`);
  }
  return value;
}

/**
 * argparse-style help: usage, description, arguments, epilog.
 *
 * @param {ParserSpec & {description?: string, epilog?: string, commands?: Array<[string, string]>}} spec
 * @returns {string}
 */
export function help(spec) {
  const options = spec.options ?? [];
  const usage = [`usage: ${spec.prog}`, '[-h]'];
  const shown = (option) =>
    option.action === 'store_true' || option.action === 'version' ? option.flag : `${option.flag} ${metavarOf(option)}`;
  const required = (spec.requiredExclusive ?? []).flat();
  for (const option of options) {
    if (!required.includes(option.flag)) usage.push(`[${shown(option)}]`);
  }
  for (const group of spec.requiredExclusive ?? []) {
    usage.push(`(${group.map((flag) => shown(options.find((option) => option.flag === flag))).join(' | ')})`);
  }
  for (const positional of spec.positionals ?? []) {
    const name = positional.metavar ?? positional.dest;
    usage.push(positional.optional ? `[${name}]` : name);
  }
  if (spec.command) usage.push(`${spec.command.dest} ...`);
  const lines = [wrap(usage, `${' '.repeat(7 + spec.prog.length)}`), ''];
  if (spec.description) lines.push(spec.description.includes('\n') ? spec.description : wrapText(spec.description, 79).join('\n'), '');
  const rows = [];
  for (const positional of spec.positionals ?? []) rows.push([positional.metavar ?? positional.dest, positional.help ?? '']);
  for (const [name, summary] of spec.commands ?? []) rows.push([`  ${name}`, summary]);
  if (rows.length || spec.command) {
    lines.push('positional arguments:');
    if (spec.command) lines.push(`  ${spec.command.dest}`);
    lines.push(...table(rows), '');
  }
  lines.push('options:');
  lines.push(
    ...table([
      ['-h, --help', 'show this help message and exit'],
      ...options.map((option) => [shown(option), option.help ?? '']),
    ]),
  );
  if (spec.epilog) lines.push('', spec.epilog);
  return `${lines.join('\n')}\n`;
}

function metavarOf(option) {
  if (option.metavar) return option.metavar;
  if (option.choices) return `{${option.choices.join(',')}}`;
  return destOf(option).toUpperCase();
}

function wrap(words, indent, width = 79) {
  const lines = [];
  let line = '';
  for (const word of words) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent + word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  lines.push(line);
  return lines.join('\n');
}

function table(rows) {
  const lines = [];
  for (const [name, text] of rows) {
    const head = `  ${name}`;
    const body = wrapText(text, 79 - 24);
    if (head.length <= 22) {
      lines.push(`${head.padEnd(24)}${body[0] ?? ''}`.trimEnd());
    } else {
      lines.push(head);
      if (body.length) lines.push(`${' '.repeat(24)}${body[0]}`);
    }
    for (const more of body.slice(1)) lines.push(`${' '.repeat(24)}${more}`);
  }
  return lines;
}

function wrapText(text, width) {
  const lines = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}
