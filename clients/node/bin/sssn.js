#!/usr/bin/env node
// sssn: a command line for SSSN servers, built on the client in ../src.

import { parseArgs } from 'node:util';

import { SSSNClient, SSSNError, VERSION, stringify } from '../src/index.js';

const USAGE = `usage: sssn [--address HOST:PORT] COMMAND [ARGS]

Talks to an SSSN server (sssn.v1.StoreService); the address defaults to
$SSSN_ADDRESS, then 127.0.0.1:7700. Results are printed as JSON, one per line.

commands:
  create-channel NAME [--form FORM] [--description TEXT] [--schema NAME]
  get-channel NAME
  list-channels
  append CHANNEL JSON [--kind KIND] [--id ID] [--source NAME]
  query CHANNEL [--after CURSOR] [--limit N] [--kind KIND]
  subscribe CHANNEL SUBSCRIPTION_ID [--kind KIND]
  follow SUBSCRIPTION_ID [--limit N]    print events as they are committed; Ctrl-C stops

A failed call prints "sssn: CODE REASON: message {metadata}" on stderr and
exits with status 1; a usage error exits with status 2.`;

const OPTIONS = {
  address: { type: 'string' },
  form: { type: 'string' },
  description: { type: 'string', default: '' },
  schema: { type: 'string', default: '' },
  kind: { type: 'string', default: '' },
  id: { type: 'string', default: '' },
  source: { type: 'string', default: 'sssn-cli' },
  after: { type: 'string', default: '0' },
  limit: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
};

class UsageError extends Error {}

function print(data) {
  process.stdout.write(`${stringify(data)}\n`);
}

function integer(text, flag) {
  if (text === undefined) return undefined;
  const number = Number(text);
  if (!Number.isInteger(number)) throw new UsageError(`${flag} must be an integer, not ${text}`);
  return number;
}

function need(positionals, count, usage) {
  if (positionals.length !== count) throw new UsageError(`usage: sssn ${usage}`);
  return positionals;
}

const COMMANDS = {
  async 'create-channel'(client, args, values) {
    const [name] = need(args, 1, 'create-channel NAME [--form FORM]');
    const { form, description, schema } = values;
    print(await client.createChannel({ name, form, description, schema }));
  },
  async 'get-channel'(client, args) {
    const [name] = need(args, 1, 'get-channel NAME');
    print(await client.getChannel(name));
  },
  async 'list-channels'(client, args) {
    need(args, 0, 'list-channels');
    let pageToken = '';
    do {
      const page = await client.listChannels({ pageToken });
      page.channels.forEach(print);
      pageToken = page.nextPageToken;
    } while (pageToken);
  },
  async append(client, args, values) {
    const [channel, json] = need(args, 2, 'append CHANNEL JSON [--kind KIND]');
    let payload;
    try {
      payload = JSON.parse(json);
    } catch (error) {
      throw new UsageError(`the payload is not JSON: ${error.message}`);
    }
    const { kind, id, source } = values;
    print(await client.appendEvent({ channel, payload, kind, id, source }));
  },
  async query(client, args, values) {
    const [channel] = need(args, 1, 'query CHANNEL [--after CURSOR] [--limit N] [--kind KIND]');
    if (!/^\d+$/.test(values.after)) throw new UsageError(`--after must be a cursor, not ${values.after}`);
    const events = await client.queryEvents(channel, {
      afterCursor: values.after,
      limit: integer(values.limit, '--limit'),
      kind: values.kind,
    });
    events.forEach(print);
  },
  async subscribe(client, args, values) {
    const [channel, id] = need(args, 2, 'subscribe CHANNEL SUBSCRIPTION_ID [--kind KIND]');
    print(await client.createSubscription({ channel, id, kind: values.kind }));
  },
  async follow(client, args, values) {
    const [id] = need(args, 1, 'follow SUBSCRIPTION_ID [--limit N]');
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const limit = integer(values.limit, '--limit');
      for await (const event of client.follow(id, { limit, signal: stop.signal })) print(event);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};

async function main(argv = process.argv.slice(2)) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  } catch (error) {
    process.stderr.write(`sssn: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    print(VERSION);
    return 0;
  }
  const [command, ...args] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`sssn: unknown command ${command}\n${USAGE}\n`);
    return 2;
  }
  const client = new SSSNClient(values.address || undefined);
  try {
    await run(client, args, values);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`sssn: ${error.message}\n`);
      return 2;
    }
    if (error instanceof SSSNError) {
      const reason = error.reason ? ` ${error.reason}` : '';
      const metadata = Object.keys(error.metadata).length ? ` ${stringify(error.metadata)}` : '';
      process.stderr.write(`sssn: ${error.codeName}${reason}: ${error.message}${metadata}\n`);
      for (const violation of error.fieldViolations) {
        process.stderr.write(`  ${violation.field}: ${violation.description}\n`);
      }
      return 1;
    }
    if (error instanceof TypeError) {
      process.stderr.write(`sssn: ${error.message}\n`);
      return 2;
    }
    throw error;
  } finally {
    client.close();
  }
}

process.exitCode = await main();
