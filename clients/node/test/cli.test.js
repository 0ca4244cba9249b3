// The `sssn` command line against a live server: the Python command line's
// vocabulary, JSON output and exit codes (tests/test_cli_parity.py compares
// the two line by line; these cover what only the Node one does).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { SSSNClient } from '../src/index.js';
import { serverAddress, unique } from './server.js';

const CLI = fileURLToPath(new URL('../bin/sssn.js', import.meta.url));
const TIMEOUT = { timeout: 20_000 };

let address;
let client;

before(async () => {
  address = await serverAddress();
  client = new SSSNClient(address);
});

after(() => client?.close());

// The environment without SSSN_* settings, plus `extra`.
function environment(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('SSSN_')));
  return { ...env, ...extra };
}

/**
 * Runs the CLI to completion: its exit code, stdout, its lines parsed as JSON,
 * and stderr. `args` go after `--target ADDRESS` unless `target` is false.
 */
function run(args, { target = true, env = environment() } = {}) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...(target ? ['--target', address] : []), ...args],
      { timeout: 15_000, env },
      (error, stdout, stderr) => {
        const lines = stdout.split('\n').filter(Boolean);
        let output;
        try {
          output = lines.map((line) => JSON.parse(line));
        } catch {
          output = null;
        }
        resolve({ code: error ? error.code : 0, stdout, output, stderr });
      },
    );
  });
}

const sssn = (...args) => run(args);

/** The one JSON object a successful command printed. */
async function ok(...args) {
  const result = await sssn(...args);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  assert.equal(result.output.length, 1, result.stdout);
  return result.output[0];
}

/** Lines `child` prints, one at a time. */
function lineReader(child) {
  const lines = [];
  const waiting = [];
  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
    while (waiting.length && lines.length) waiting.shift()(lines.shift());
  });
  return () =>
    new Promise((resolve, reject) => {
      if (lines.length) resolve(lines.shift());
      else {
        waiting.push(resolve);
        child.once('exit', (code) => reject(new Error(`exited with ${code} before printing a line`)));
      }
    });
}

function spawnCli(args) {
  const child = spawn(process.execPath, [CLI, '--target', address, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: environment(),
  });
  child.stderrText = '';
  child.stderr.on('data', (chunk) => {
    child.stderrText += chunk;
  });
  return child;
}

test('resources print as the Python command line prints them', TIMEOUT, async () => {
  const channel = unique('cli');
  const created = await ok('create-channel', channel, '--form', 'feed', '--description', 'from the cli');
  assert.deepEqual(created, { name: channel, schema: null, form: 'feed', description: 'from the cli', metadata: {} });

  const appended = await sssn('append', channel, '{"text": "hi"}', '--kind', 'greeting', '--timestamp', '1700000000');
  assert.equal(appended.code, 0, appended.stderr);
  // Timestamps are RFC 3339 text in UTC, as the Python command line prints them.
  assert.match(appended.stdout, /"timestamp":"2023-11-14T22:13:20Z","source":null,"kind":"greeting"/);
  const [event] = appended.output;
  assert.deepEqual(Object.keys(event), [
    'id',
    'cursor',
    'channel',
    'timestamp',
    'source',
    'kind',
    'payload',
    'schema',
    'metadata',
    'correlation_id',
    'parent_ids',
  ]);
  assert.ok(Number.isInteger(event.cursor) && event.cursor > 0, 'the cursor is printed as a number');

  await sssn('append', channel, '"second"');
  const queried = await sssn('query-events', channel, '--after-cursor', String(event.cursor));
  assert.equal(queried.code, 0, queried.stderr);
  assert.deepEqual(
    queried.output.map((item) => item.payload),
    ['second'],
  );
});

test('a failed call prints one error line and exits with the status of its class', TIMEOUT, async () => {
  const name = unique('missing');
  const result = await sssn('get-channel', name);
  assert.equal(result.code, 3);
  assert.equal(result.stdout, '');
  assert.equal(result.stderr, `sssn: error: CHANNEL_NOT_FOUND: Channel not found: ${name}\n`);
  const taken = unique('taken');
  await client.createChannel({ name: taken });
  assert.equal((await sssn('create-channel', taken)).code, 4);
  assert.equal((await sssn('create-channel', 'a b')).code, 5);
});

test('usage errors exit 2 with one line, without calling the server', TIMEOUT, async () => {
  for (const args of [
    ['append', 'only-a-channel'],
    ['append', 'c', '{not json'],
    ['frobnicate'],
    ['seek-subscription', 'w'],
    ['channels', '--no-such-flag'],
  ]) {
    const result = await run(['--target', '127.0.0.1:1', ...args], { target: false });
    assert.equal(result.code, 2, args.join(' '));
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^sssn: error: USAGE: [^\n]+\n$/);
  }
});

test('--target and SSSN_TARGET name the server; --address and SSSN_ADDRESS still work, deprecated', TIMEOUT, async () => {
  const fromVariable = await run(['channels'], { target: false, env: environment({ SSSN_TARGET: address }) });
  assert.equal(fromVariable.code, 0, fromVariable.stderr);
  assert.equal(fromVariable.stderr, '');

  const oldFlag = await run(['--address', address, 'channels'], { target: false });
  assert.equal(oldFlag.code, 0, oldFlag.stderr);
  assert.equal(oldFlag.stderr, 'sssn: warning: --address is deprecated; use --target\n');
  assert.equal(oldFlag.stdout, fromVariable.stdout);

  const oldVariable = await run(['channels'], { target: false, env: environment({ SSSN_ADDRESS: address }) });
  assert.equal(oldVariable.code, 0, oldVariable.stderr);
  assert.equal(oldVariable.stderr, 'sssn: warning: SSSN_ADDRESS is deprecated; use SSSN_TARGET\n');

  // The new names win over the old ones.
  const both = await run(['channels'], {
    target: false,
    env: environment({ SSSN_TARGET: address, SSSN_ADDRESS: '127.0.0.1:1' }),
  });
  assert.equal(both.code, 0, both.stderr);
  assert.equal(both.stderr, '');
});

test('--store and SSSN_STORE point to the Python command line, which runs a store in-process', TIMEOUT, async () => {
  for (const [args, env] of [
    [['--store', '/tmp/x', 'channels'], environment()],
    [['channels'], environment({ SSSN_STORE: '/tmp/x' })],
  ]) {
    const refused = await run(args, { target: false, env });
    assert.equal(refused.code, 2);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /^sssn: error: USAGE: --store runs the store in-process, .*--target HOST:PORT\n$/);
  }
  // SSSN_TARGET goes before SSSN_STORE, as in Python.
  const served = await run(['channels'], { target: false, env: environment({ SSSN_STORE: '/tmp/x', SSSN_TARGET: address }) });
  assert.equal(served.code, 0, served.stderr);
});

test('serve says that it needs the Python package', TIMEOUT, async () => {
  const result = await sssn('serve', '--store', '/tmp/x');
  assert.equal(result.code, 2);
  assert.match(result.stderr, /^sssn: error: USAGE: serve runs the server, which is Python: pip install/);
});

test('subscription admin: list, seek and delete', TIMEOUT, async () => {
  const channel = unique('cli-admin');
  await client.createChannel({ name: channel });
  const stored = await client.appendEvents([1, 2, 3].map((payload) => ({ channel, payload })));
  const id = unique('cli-sub');
  await ok('create-subscription', channel, '--id', id);
  const listed = await sssn('list-subscriptions', '--channel', channel);
  assert.deepEqual(listed.output, [
    { id, channel, cursor: 0, consumer: null, batch_size: 100, filters: {}, metadata: {} },
  ]);
  const moved = await ok('seek-subscription', id, '--cursor', String(stored[1].cursor));
  assert.equal(moved.cursor, Number(stored[1].cursor));
  assert.deepEqual(
    (await sssn('pull-subscription', id)).output.map((event) => event.payload),
    [3],
  );
  const when = stored[0].timestamp.toISOString();
  await ok('seek-subscription', id, '--timestamp', when);
  assert.deepEqual(
    (await sssn('pull-subscription', id)).output.map((event) => event.payload),
    [1, 2, 3],
  );
  assert.deepEqual(await ok('delete-subscription', id), { id, deleted: true });
  assert.equal((await sssn('get-subscription', id)).code, 3);
  assert.deepEqual(await ok('delete-channel', channel), { name: channel, deleted_events: 3 });
});

test('artifacts: text, base64 and a streamed file, read back whole', TIMEOUT, async () => {
  const text = await ok('write-artifact', 'héllo', '--media-type', 'text/plain');
  assert.equal(text.sha256, createHash('sha256').update('héllo').digest('hex'));
  assert.deepEqual(await ok('get-artifact', text.id), text);
  assert.equal((await sssn('read-artifact', text.id)).stdout, 'héllo\n');

  const binary = Buffer.from([0, 1, 2, 253, 254, 255]);
  const stored = await ok('write-artifact', binary.toString('base64'), '--encoding', 'base64');
  assert.equal((await sssn('read-artifact', stored.id, '--encoding', 'base64')).stdout, `${binary.toString('base64')}\n`);
  const notText = await sssn('read-artifact', stored.id);
  assert.equal(notText.code, 2);
  assert.match(notText.stderr, /--encoding base64/);

  const folder = mkdtempSync(path.join(tmpdir(), 'sssn-cli-'));
  try {
    const file = path.join(folder, 'payload.bin');
    const payload = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    writeFileSync(file, payload);
    const fromFile = await ok('write-artifact', '--file', file);
    assert.equal(fromFile.size, payload.length);
    assert.equal(fromFile.sha256, createHash('sha256').update(payload).digest('hex'));
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test('snapshots: put replaces, get reads', TIMEOUT, async () => {
  const name = unique('cli-state');
  await ok('put-snapshot', name, '{"version": 1}');
  const stored = await ok('put-snapshot', name, '{"version": 2}', '--metadata', '{"by": "cli"}');
  assert.deepEqual(Object.keys(stored), ['name', 'channel', 'timestamp', 'value', 'schema', 'source_event_id', 'metadata']);
  assert.deepEqual(await ok('get-snapshot', name), stored);
  assert.deepEqual(stored.value, { version: 2 });
});

test('tail --subscription follows as events commit and stops on SIGINT', TIMEOUT, async () => {
  const channel = unique('cli-live');
  await client.createChannel({ name: channel });
  const id = unique('cli-worker');
  await client.createSubscription({ channel, id });
  const backlog = await client.appendEvent({ channel, payload: 'before' });
  const follower = spawnCli(['tail', '--subscription', id]);
  try {
    const next = lineReader(follower);
    assert.equal(JSON.parse(await next()).id, backlog.id);
    const live = await client.appendEvent({ channel, payload: { live: true } });
    const printed = JSON.parse(await next());
    assert.equal(printed.id, live.id);
    assert.deepEqual(printed.payload, { live: true });
    follower.kill('SIGINT');
    const [code] = await once(follower, 'exit');
    assert.equal(code, 0, `tail exited with ${code}: ${follower.stderrText}`);
    assert.equal(follower.stderrText, '');
  } finally {
    follower.kill('SIGKILL');
  }
});

test('tail CHANNEL polls a channel without moving any cursor', TIMEOUT, async () => {
  const channel = unique('cli-poll');
  await client.createChannel({ name: channel });
  const id = unique('cli-idle');
  await client.createSubscription({ channel, id });
  const first = await client.appendEvents(['a', 'b', 'a'].map((kind) => ({ channel, kind })));
  const follower = spawnCli([
    'tail',
    channel,
    '--kind',
    'a',
    '--after-cursor',
    String(first[0].cursor),
    '--poll-interval',
    '0.05',
  ]);
  try {
    const next = lineReader(follower);
    assert.equal(JSON.parse(await next()).id, first[2].id);
    const later = await client.appendEvent({ channel, kind: 'a' });
    assert.equal(JSON.parse(await next()).id, later.id);
    follower.kill('SIGINT');
    const [code] = await once(follower, 'exit');
    assert.equal(code, 0, follower.stderrText);
    assert.equal((await client.getSubscription(id)).cursor, 0n);
  } finally {
    follower.kill('SIGKILL');
  }
  assert.equal((await sssn('tail', unique('cli-ghost'))).code, 3);
  assert.equal((await sssn('tail')).code, 2);
  assert.equal((await sssn('tail', channel, '--subscription', id)).code, 2);
});
