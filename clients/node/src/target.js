// The gRPC address and credentials of a target, read as the Python client reads it.

import * as grpc from '@grpc/grpc-js';

import { invalidArgument } from './errors.js';
import { repr } from './python.js';

// Schemes gRPC resolves itself (`dns:///host:port`, `unix:/path`...): passed through.
const GRPC_SCHEMES = new Set(['dns', 'unix', 'unix-abstract', 'ipv4', 'ipv6', 'vsock', 'xds']);
// URLs as the reference's HTTP clients take them, with the port of each scheme.
const URL_PORTS = { http: 80, https: 443 };
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const USAGE = 'give host:port, http://host:port (plain text) or https://host:port (TLS)';

/**
 * The gRPC address and credentials of a client's target.
 *
 * `http://host:port` is `host:port` in plain text and `https://host:port` is
 * `host:port` over TLS (the given credentials, else the system's CAs), so the
 * base URLs of the reference's HTTP clients keep working; `host:port` and
 * gRPC's own targets (`dns:///...`, `unix:...`) pass unchanged. Targets gRPC
 * would only reject at the first call are refused here.
 *
 * @param {string} target
 * @param {grpc.ChannelCredentials | undefined} credentials
 * @returns {{address: string, credentials: grpc.ChannelCredentials}}
 * @throws {import('./errors.js').SSSNError} INVALID_ARGUMENT `INVALID_PAYLOAD` naming `target`
 */
export function resolveTarget(target, credentials) {
  if (typeof target !== 'string' || !target.trim()) throw invalidArgument('target', `is empty; ${USAGE}`);
  if (/\s/.test(target)) throw invalidArgument('target', `${repr(target)} contains whitespace; ${USAGE}`);
  const scheme = SCHEME.exec(target)?.[1].toLowerCase() ?? '';
  if (scheme in URL_PORTS) return urlTarget(target, scheme, credentials);
  const plain = credentials ?? grpc.credentials.createInsecure();
  if (GRPC_SCHEMES.has(scheme)) return { address: target, credentials: plain };
  if (target.includes('://')) {
    throw invalidArgument('target', `${repr(target)} has an unsupported scheme; ${USAGE}`);
  }
  checkHostPort(target);
  return { address: target, credentials: plain };
}

function urlTarget(url, scheme, credentials) {
  const rest = url.slice(scheme.length);
  // As Python's urlsplit: the authority runs to the first `/`, `?` or `#`.
  const authority = rest.startsWith('://') ? /^[^/?#]*/.exec(rest.slice(3))[0] : '';
  const at = authority.lastIndexOf('@');
  const hostPort = authority.slice(at + 1);
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(hostPort);
  const colon = hostPort.lastIndexOf(':');
  const host = (bracketed ? bracketed[1] : colon < 0 ? hostPort : hostPort.slice(0, colon)).toLowerCase();
  const portText = bracketed ? (bracketed[2] ?? '') : colon < 0 ? '' : hostPort.slice(colon + 1);
  if (!host) throw invalidArgument('target', `${repr(url)} is not a URL with a host; ${USAGE}`);
  if (portText && (!/^\d+$/.test(portText) || Number(portText) > 65535)) {
    throw invalidArgument('target', `${repr(url)} has an invalid port; ${USAGE}`);
  }
  if (at >= 0) throw invalidArgument('target', 'must not hold credentials; send the token as call metadata (--token on the command line)');
  const [, path, query, fragment] = /^([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/s.exec(rest.slice(3 + authority.length));
  if ((path !== '' && path !== '/') || query || fragment) {
    // A gRPC server answers at the root: a path prefix of an HTTP proxy has no meaning.
    throw invalidArgument('target', `${repr(url)} has a path; gRPC takes only scheme://host:port`);
  }
  const address = `${host.includes(':') ? `[${host}]` : host}:${portText ? Number(portText) : URL_PORTS[scheme]}`;
  if (scheme === 'https') return { address, credentials: credentials ?? grpc.credentials.createSsl() };
  if (credentials?._isSecure()) {
    throw invalidArgument('target', `${repr(url)} asks for plain text but credentials were given`);
  }
  return { address, credentials: credentials ?? grpc.credentials.createInsecure() };
}

// Refuses a `host:port` whose port is not a port number.
function checkHostPort(target) {
  const colon = target.lastIndexOf(':');
  if (colon < 0) return;
  const host = target.slice(0, colon);
  if (host.includes(':') && !host.startsWith('[')) return; // a bare IPv6 address
  const port = target.slice(colon + 1);
  if (!/^\d+$/.test(port) || Number(port) > 65535) {
    throw invalidArgument('target', `${repr(target)} has an invalid port; ${USAGE}`);
  }
}
