/**
 * How long a connection may take to send a request, and may sit idle between requests, before the
 * server closes it. A socket that sends half a request, or nothing, holds a file descriptor; in a
 * drop such sockets would otherwise pile up until the process runs out of them.
 *
 * @remarks No inactivity timeout while a request is being handled (Fastify's `connectionTimeout`
 * stays 0): a buyer waiting in a reservation lane or on a slow payment sends nothing, and must not
 * be cut off. Node checks the header and request deadlines on a timer (`connectionsCheckingInterval`,
 * 30 s by default, which would let a 10 s deadline run to 40 s); a fifth of the shorter deadline
 * keeps every such close within 1.2 times its deadline. An idle kept-alive socket is closed 1 s
 * after `keepAliveMs`: Node adds that second so a client that honours the advertised
 * `Keep-Alive: timeout=` never reuses a socket the server is closing.
 */
import type { ServerOptions } from 'node:http';

export interface ConnectionTimeouts {
  readonly headersMs: number;
  readonly requestMs: number;
  readonly keepAliveMs: number;
}

/** The Fastify options that set them on its `node:http` server. */
export function connectionTimeoutOptions(timeouts: ConnectionTimeouts): {
  keepAliveTimeout: number;
  requestTimeout: number;
  http: ServerOptions;
} {
  return {
    keepAliveTimeout: timeouts.keepAliveMs,
    requestTimeout: timeouts.requestMs,
    http: {
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      connectionsCheckingInterval: Math.max(10, Math.floor(Math.min(timeouts.headersMs, timeouts.requestMs) / 5)),
    },
  };
}
