/**
 * Bearer-token guards. Buyer tokens are verified by signature (no database round trip); admin
 * routes compare against the admin token in constant time.
 *
 * @remarks Routes run them as `onRequest` hooks, the first step of a request: a caller without a
 * valid token hears `401`/`403` before its body is read, parsed or validated, so a `400` never
 * describes the body of a request nobody was allowed to send (and an unauthenticated body costs
 * nothing to parse).
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { sameSecret, type Tokens } from '../infra/tokens.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `requireBuyer`: the id of the buyer whose token signed this request. */
    buyerId: string;
  }
}

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (header === undefined) throw new DomainError('UNAUTHORIZED', 'missing Authorization: Bearer <token>');
  const match = /^Bearer +(\S+)$/i.exec(header);
  if (!match?.[1]) throw new DomainError('UNAUTHORIZED', 'the Authorization header must be "Bearer <token>"');
  return match[1];
}

export function requireBuyer(tokens: Tokens): onRequestHookHandler {
  return (request: FastifyRequest, _reply: FastifyReply, done) => {
    const buyerId = tokens.verify(bearer(request));
    if (buyerId === undefined) throw new DomainError('UNAUTHORIZED', 'the token is not valid');
    request.buyerId = buyerId;
    done();
  };
}

export function requireAdmin(adminToken: string, tokens: Tokens): onRequestHookHandler {
  return (request: FastifyRequest, _reply: FastifyReply, done) => {
    const token = bearer(request);
    if (sameSecret(token, adminToken)) {
      done();
      return;
    }
    if (tokens.verify(token) !== undefined) throw new DomainError('FORBIDDEN', 'admin routes need the admin token');
    throw new DomainError('UNAUTHORIZED', 'the token is not valid');
  };
}
