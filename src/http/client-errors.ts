/**
 * What the server answers when Node's HTTP parser refuses a request before any route runs (a
 * header block over 16 KiB, both `Content-Length` and `Transfer-Encoding`, a request that took
 * longer than its deadline): a problem document with a stable code, like every other refusal,
 * then the connection is closed. Fastify's own handler answers these in plain JSON.
 *
 * @remarks Written to the socket by hand because no request or reply exists yet at this point:
 * the parser failed before Fastify saw a request (Fastify's `clientErrorHandler` hands over the
 * bare socket for the same reason).
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ERROR_CODES } from '../infra/errors.js';
import { problem, PROBLEM_CONTENT_TYPE } from './problem.js';

interface ParserError extends Error {
  readonly code?: string;
}

const DETAILS = {
  REQUEST_TIMEOUT: 'the request did not arrive in time',
  HEADERS_TOO_LARGE: 'the request headers are too large',
  BAD_REQUEST: 'the request is not valid HTTP',
} as const;

function codeOf(error: ParserError): keyof typeof DETAILS {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'REQUEST_TIMEOUT';
  if (error.code === 'HPE_HEADER_OVERFLOW') return 'HEADERS_TOO_LARGE';
  return 'BAD_REQUEST';
}

/** Fastify's `clientErrorHandler` (called with the instance as `this`): answers in problem+json and closes the connection. */
export function problemClientErrorHandler(this: FastifyInstance, error: ParserError, socket: Socket): void {
  // A client that hung up, or a socket already gone, has nobody to answer; it is no fault of
  // ours, so it is logged at debug (at error level, anyone could flood the log).
  if (error.code === 'ECONNRESET' || socket.destroyed) {
    this.log.debug({ code: error.code }, 'client connection ended');
    socket.destroy();
    return;
  }
  const code = codeOf(error);
  const status = ERROR_CODES[code].status;
  const body = JSON.stringify(problem(code, DETAILS[code]));
  this.log.debug({ code: error.code }, `client error: ${code}`);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'X-Content-Type-Options: nosniff\r\n' +
      'Connection: close\r\n\r\n' +
      body,
  );
}
