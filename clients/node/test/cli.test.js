// The `sssn` command line against a live server.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
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

/** Runs the CLI to completion: its exit code, stdout lines parsed as JSON, and stderr. */
function sssn(...args) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, '--address', address, ...args],
      { timeout: 15_000 },
      (error, stdout, stderr) => {
        const lines = stdout.split('\n').filter(Boolean);
        resolve({ code: error ? error.code : 0, output: lines.map((line) => JSON.parse(line)), stderr });
      },
    );
  });
}

/** The first line `child` prints; rejects if it exits first. */
function firstLine(child) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      if (buffered.includes('\n')) resolve(buffered.slice(0, buffered.indexOf('\n')));
    });
    child.on('exit', (code) => reject(new Error(`exited with ${code} before printing a line`)));
  });
}

test('create-channel, append and query print the stored resources', TIMEOUT, async () => {
  const channel = unique('cli');
  const created = await sssn('create-channel', channel, '--form', 'feed', '--description', 'from the cli');
  assert.equal(created.code, 0, created.stderr);
  assert.deepEqual(created.output, [
    { name: channel, schema: '', form: 'feed', description: 'from the cli', metadata: {} },
  ]);

  const appended = await sssn('append', channel, '{"text": "hi", "n": [1, 2]}', '--kind', 'greeting');
  assert.equal(appended.code, 0, appended.stderr);
  const [event] = appended.output;
  assert.equal(event.kind, 'greeting');
  assert.equal(event.source, 'sssn-cli');
  assert.deepEqual(event.payload, { text: 'hi', n: [1, 2] });
  assert.ok(Number.isInteger(event.cursor) && event.cursor > 0, 'the cursor is printed as a number');

  await sssn('append', channel, '"second"');
  const queried = await sssn('query', channel, '--after', String(event.cursor));
  assert.equal(queried.code, 0, queried.stderr);
  assert.deepEqual(
    queried.output.map((item) => item.payload),
    ['second'],
  );
});

test('a failed call prints code, reason and resource and exits 1', TIMEOUT, async () => {
  const name = unique('missing');
  const result = await sssn('get-channel', name);
  assert.equal(result.code, 1);
  assert.deepEqual(result.output, []);
  assert.match(result.stderr, /^sssn: NOT_FOUND CHANNEL_NOT_FOUND: /);
  assert.ok(result.stderr.includes(JSON.stringify({ channel: name })), result.stderr);
});

test('usage errors exit 2 without calling the server', TIMEOUT, async () => {
  assert.equal((await sssn('append', 'only-a-channel')).code, 2);
  assert.equal((await sssn('append', 'c', '{not json')).code, 2);
  assert.equal((await sssn('create-channel', 'x', '--form', 'no-such-form')).code, 2);
  assert.equal((await sssn('frobnicate')).code, 2);
});

test('follow prints events as they are committed and stops on SIGINT', TIMEOUT, async () => {
  const channel = unique('cli-live');
  await client.createChannel({ name: channel });
  const id = unique('cli-worker');
  await client.createSubscription({ channel, id });
  const follower = spawn(process.execPath, [CLI, '--address', address, 'follow', id], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  follower.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  try {
    const line = firstLine(follower);
    const appended = await client.appendEvent({ channel, payload: { live: true } });
    const printed = JSON.parse(await line);
    assert.equal(printed.id, appended.id);
    assert.deepEqual(printed.payload, { live: true });

    follower.kill('SIGINT');
    const [code] = await once(follower, 'exit');
    assert.equal(code, 0, `follow exited with ${code}: ${stderr}`);
  } finally {
    follower.kill('SIGKILL');
  }
});
