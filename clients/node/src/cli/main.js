// The `sssn` command line: the Python `sssn`'s vocabulary, output and exit codes, on this client.

import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';

import { DEFAULT_TARGET, DEFAULT_TIMEOUT_MS, SSSNClient, VERSION } from '../client.js';
import { SSSNError } from '../errors.js';
import { UsageError, float, help, parse } from './args.js';
import { COMMANDS, strerror } from './commands.js';

// Exit status of each error: part of the command line's contract, the Python
// command line's numbers. An ErrorInfo reason decides first (as the Python
// client picks its error class), then the status code; anything else is 1.
const EXIT_BY_REASON = {
  CHANNEL_NOT_FOUND: 3,
  EVENT_NOT_FOUND: 3,
  SUBSCRIPTION_NOT_FOUND: 3,
  ARTIFACT_NOT_FOUND: 3,
  SNAPSHOT_NOT_FOUND: 3,
  CHANNEL_EXISTS: 4,
  SUBSCRIPTION_EXISTS: 4,
  EVENT_EXISTS: 4,
  INVALID_PAYLOAD: 5,
  EVENT_TOO_LARGE: 5,
  PAYLOAD_TOO_DEEP: 5,
  LIMIT_EXCEEDED: 5,
  STORE_READ_ONLY: 6,
  EVENT_UNDELIVERABLE: 6,
  SUBSCRIPTION_LEASE_LOST: 6,
  ARTIFACT_TOO_LARGE: 7,
  TOO_MANY_ITEMS: 7,
  STORAGE_FULL: 7,
  SHUTTING_DOWN: 8,
  STORE_UNAVAILABLE: 8,
  ARTIFACT_INTEGRITY: 10,
  UNAUTHENTICATED: 11,
  PERMISSION_DENIED: 12,
  INTERNAL: 1,
  SUBSCRIPTION_TAKEN_OVER: 1,
};
const EXIT_BY_CODE = {
  NOT_FOUND: 3,
  ALREADY_EXISTS: 4,
  INVALID_ARGUMENT: 5,
  FAILED_PRECONDITION: 6,
  RESOURCE_EXHAUSTED: 7,
  UNAVAILABLE: 8,
  DEADLINE_EXCEEDED: 9,
  DATA_LOSS: 10,
  UNAUTHENTICATED: 11,
  PERMISSION_DENIED: 12,
};
const EXIT_OTHER_ERROR = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

/** The stable exit status of a failed call. */
export function exitCode(error) {
  return EXIT_BY_REASON[error.reason] ?? EXIT_BY_CODE[error.codeName] ?? EXIT_OTHER_ERROR;
}

const EPILOG = `exit status:
  0    success (also \`tail\` stopped with Ctrl-C)
  1    any other error (INTERNAL, UNKNOWN, ...)
  2    bad command line or argument (usage error)
  3    NOT_FOUND: *_NOT_FOUND
  4    ALREADY_EXISTS: CHANNEL_EXISTS, SUBSCRIPTION_EXISTS, EVENT_EXISTS
  5    INVALID_ARGUMENT: INVALID_PAYLOAD
  6    FAILED_PRECONDITION: STORE_READ_ONLY
  7    RESOURCE_EXHAUSTED: ARTIFACT_TOO_LARGE, TOO_MANY_ITEMS
  8    UNAVAILABLE: server unreachable or SHUTTING_DOWN
  9    DEADLINE_EXCEEDED: no answer within --timeout
  10   DATA_LOSS: ARTIFACT_INTEGRITY (size or sha256 mismatch)
  11   UNAUTHENTICATED: no valid token (--token, SSSN_TOKEN)
  12   PERMISSION_DENIED: the token's grants exclude the channel
  130  interrupted with Ctrl-C

Results are JSON on stdout: one object per line (lists are JSON Lines).
Errors are one line on stderr: \`sssn: error: REASON: message\` (REASON is the
server's ErrorInfo reason, a gRPC status name, or USAGE for a bad argument).`;

const SERVE_HELP =
  'Start the gRPC server (Python only: install the Python package and run `sssn serve`)';

function environmentFlag(name) {
  return ['1', 'true', 'yes', 'on'].includes((process.env[name] ?? '').toLowerCase());
}

function globalSpec() {
  const env = process.env;
  return {
    prog: 'sssn',
    description:
      'Talk to an SSSN gRPC server: channels, events, subscriptions, artifacts and\n' +
      'snapshots. Global options go before the command. (The Node.js command line;\n' +
      '`serve` needs the Python package.)',
    epilog: EPILOG,
    options: [
      { flag: '--version', action: 'version', help: "show program's version number and exit" },
      {
        flag: '--target',
        help:
          'server address: host:port, http://host:port (plain text) or https://host:port (TLS) ' +
          `[SSSN_TARGET] (default: ${DEFAULT_TARGET})`,
      },
      { flag: '--address', metavar: 'TARGET', help: 'deprecated alias of --target [SSSN_ADDRESS, deprecated]' },
      {
        flag: '--store',
        metavar: 'DIR',
        help:
          "the Python command line's store in-process; this one talks to servers only, " +
          `so without --target: SSSN_TARGET, else ${DEFAULT_TARGET} [SSSN_STORE]`,
      },
      {
        flag: '--timeout',
        type: float,
        default: DEFAULT_TIMEOUT_MS / 1000,
        help: `deadline of each call in seconds (default: ${DEFAULT_TIMEOUT_MS / 1000})`,
      },
      {
        flag: '--tls',
        action: 'store_true',
        default: environmentFlag('SSSN_TLS'),
        help: "connect with TLS, trusting the system's CAs [SSSN_TLS]",
      },
      {
        flag: '--tls-ca',
        metavar: 'PEM',
        default: env.SSSN_TLS_CA ?? null,
        help: 'connect with TLS, trusting this CA bundle (implies --tls) [SSSN_TLS_CA]',
      },
      {
        flag: '--tls-client-cert',
        metavar: 'PEM',
        default: env.SSSN_TLS_CLIENT_CERT ?? null,
        help: 'client certificate for servers that require one (mTLS) [SSSN_TLS_CLIENT_CERT]',
      },
      {
        flag: '--tls-client-key',
        metavar: 'PEM',
        default: env.SSSN_TLS_CLIENT_KEY ?? null,
        help: 'private key of --tls-client-cert [SSSN_TLS_CLIENT_KEY]',
      },
      {
        flag: '--token',
        default: env.SSSN_TOKEN ?? null,
        help:
          'bearer token sent as `authorization` metadata; prefer the variable, which stays out ' +
          'of the process list [SSSN_TOKEN]',
      },
    ],
    command: { dest: 'COMMAND', choices: [...Object.keys(COMMANDS), 'serve'] },
    commands: [...Object.entries(COMMANDS).map(([name, command]) => [name, command.summary]), ['serve', SERVE_HELP]],
  };
}

function commandSpec(name) {
  const command = COMMANDS[name];
  return {
    ...command,
    prog: `sssn ${name}`,
    description: command.description ?? command.summary,
    epilog: EPILOG,
  };
}

function say(line) {
  process.stderr.write(`sssn: ${line}\n`);
}

function failUsage(message) {
  say(`error: USAGE: ${message}`);
  return EXIT_USAGE;
}

// The target and its deprecated spellings: --target, --address, $SSSN_TARGET, $SSSN_ADDRESS.
function target(values) {
  if (values.address !== null) say('warning: --address is deprecated; use --target');
  const explicit = values.target ?? values.address;
  if (values.store !== null || (explicit === null && !process.env.SSSN_TARGET && process.env.SSSN_STORE)) {
    throw new UsageError(
      "--store runs the store in-process, which only the Python command line does " +
        "(pip install 'sssn-grpc[server]'); give --target HOST:PORT",
    );
  }
  if (values.target !== null) return values.target;
  if (values.address !== null) return values.address;
  if (process.env.SSSN_TARGET !== undefined) return process.env.SSSN_TARGET;
  if (process.env.SSSN_ADDRESS !== undefined) {
    say('warning: SSSN_ADDRESS is deprecated; use SSSN_TARGET');
    return process.env.SSSN_ADDRESS;
  }
  return DEFAULT_TARGET;
}

// TLS and token options, as the server's --tls-* and --auth-tokens expect them.
function connection(values) {
  const metadata = values.token ? { authorization: `Bearer ${values.token}` } : {};
  const { tls, tls_ca: ca, tls_client_cert: cert, tls_client_key: key } = values;
  if (!(tls || ca || cert || key)) return { metadata };
  if (Boolean(cert) !== Boolean(key)) throw new UsageError('--tls-client-cert and --tls-client-key go together');
  const read = (path) => {
    if (!path) return null;
    try {
      return readFileSync(path);
    } catch (error) {
      throw new UsageError(`cannot read ${path}: ${strerror(error)}`);
    }
  };
  const [root, certificate, privateKey] = [read(ca), read(cert), read(key)];
  return { metadata, credentials: grpc.credentials.createSsl(root, privateKey, certificate) };
}

/**
 * Runs one `sssn` command.
 *
 * @param {string[]} [argv] the arguments after the program name
 * @returns {Promise<number>} the exit status
 */
export async function main(argv = process.argv.slice(2)) {
  const global = globalSpec();
  let parsed;
  let args;
  try {
    parsed = parse(global, argv, { known: true });
    if (parsed.help) {
      process.stdout.write(help(global));
      return 0;
    }
    if (parsed.version) {
      process.stdout.write(`sssn ${VERSION}\n`);
      return 0;
    }
    if (parsed.values.COMMAND === 'serve') {
      return failUsage(
        'serve runs the server, which is Python: pip install "sssn-grpc[server]", then `sssn serve` ' +
          'or `sssn-server`',
      );
    }
    const spec = commandSpec(parsed.values.COMMAND);
    const sub = parse(spec, parsed.rest, { known: true });
    if (sub.help) {
      process.stdout.write(help(spec));
      return 0;
    }
    const extras = [...parsed.extras, ...sub.extras];
    if (extras.length) throw new UsageError(`unrecognized arguments: ${extras.join(' ')}`);
    args = sub.values;
  } catch (error) {
    if (error instanceof UsageError) return failUsage(error.message);
    throw error;
  }

  const { values } = parsed;
  const isTail = values.COMMAND === 'tail';
  const stop = new AbortController();
  const onSignal = () => {
    // tail ends normally on Ctrl-C; any other command is interrupted.
    if (isTail) stop.abort();
    else process.exit(EXIT_INTERRUPTED);
  };
  // The reader went away (`sssn tail x | head`): stop quietly.
  const onOutputError = (error) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  };
  process.on('SIGINT', onSignal);
  process.stdout.on('error', onOutputError);
  let client;
  try {
    const { credentials, metadata } = connection(values);
    try {
      client = new SSSNClient(target(values), {
        credentials,
        metadata,
        timeoutMs: values.timeout * 1000,
      });
    } catch (error) {
      // An unusable --target is a bad command line.
      if (error instanceof SSSNError && error.reason === 'INVALID_PAYLOAD') throw new UsageError(`--${error.message}`);
      throw error;
    }
    await COMMANDS[values.COMMAND].run(client, args, { signal: stop.signal });
    return 0;
  } catch (error) {
    if (error instanceof UsageError) return failUsage(error.message);
    if (error instanceof SSSNError) {
      say(`error: ${error.reason || error.codeName}: ${error.message}`);
      return exitCode(error);
    }
    throw error;
  } finally {
    client?.close();
    process.off('SIGINT', onSignal);
  }
}
