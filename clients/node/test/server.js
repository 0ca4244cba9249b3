// The server the tests talk to: $SSSN_TARGET (tests/test_node_client.py
// starts one and sets it), or else one started here from the repository's
// .venv on a free port with a scratch store, killed when the test process exits.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

let address;

/** The `host:port` of a running SSSN server. */
export function serverAddress() {
  address ??= process.env.SSSN_TARGET ? Promise.resolve(process.env.SSSN_TARGET) : startServer();
  return address;
}

async function startServer() {
  const store = mkdtempSync(path.join(tmpdir(), 'sssn-node-test-'));
  const python = path.join(REPO, '.venv', 'bin', 'python');
  const args = ['-m', 'sssn_server', '--store', store, '--port', '0', '--log-level', 'WARNING'];
  const server = spawn(python, args, {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // The scratch server lives as long as this test process, and never keeps it alive.
  process.on('exit', () => {
    server.kill('SIGKILL');
    try {
      rmSync(store, { recursive: true, force: true });
    } catch {
      // a file the dying server wrote meanwhile; the folder is in the temp dir anyway
    }
  });
  return new Promise((resolve, reject) => {
    let output = '';
    server.on('error', (error) =>
      reject(new Error(`cannot start ${python} (run \`make test\` once to create it): ${error.message}`)),
    );
    server.on('exit', (code) => reject(new Error(`sssn-server exited with ${code}: ${output}`)));
    server.stdout.setEncoding('utf8');
    server.stdout.on('data', (chunk) => {
      output += chunk;
      const match = /listening on (\S+)/.exec(output);
      if (match) {
        server.unref();
        server.stdout.unref();
        resolve(match[1]);
      }
    });
  });
}

/** A name no other test (or earlier run against the same store) uses. */
export function unique(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
