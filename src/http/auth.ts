/**
 * Bearer-token guards. A buyer's access token is checked in the process, without a database round
 * trip: its signature and expiry (`Tokens`), then whether its session was ended
 * (`RevokedSessions`, this process's view of users' revocations). Admin routes compare against the
 * admin token in constant time.
 *
 * @remarks Routes run them as `onRequest` hooks, the first step of a request: a caller without a
 * valid token hears `401`/`403` before its body is read, parsed or validated, so a `400` never
 * describes the body of a request nobody was allowed to send (and an unauthenticated body costs
 * nothing to parse). An expired token (or one of the pre-session format) is `TOKEN_EXPIRED`, which
 * tells the client to exchange its refresh credential at `POST /v1/tokens`; one whose session was
 * ended is `TOKEN_REVOKED`, which tells it refreshing will not help.
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { sameSecret, type TokenRefusal, type Tokens } from '../infra/tokens.js';
import type { RevokedSessions } from '../users/revoked-sessions.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `requireBuyer`: the id of the buyer whose token signed this request. */
    buyerId: string;
    /** Set by `requireBuyer`: the session that token was issued from. */
    sessionId: string;
  }
}

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (header === undefined) throw new DomainError('UNAUTHORIZED', 'missing Authorization: Bearer <token>');
  const match = /^Bearer +(\S+)$/i.exec(header);
  if (!match?.[1]) throw new DomainError('UNAUTHORIZED', 'the Authorization header must be "Bearer <token>"');
  return match[1];
}

function refused(reason: TokenRefusal): DomainError {
  switch (reason) {
    case 'invalid':
      return new DomainError('UNAUTHORIZED', 'the token is not valid');
    case 'expired':
      return new DomainError('TOKEN_EXPIRED', 'the access token has expired; exchange the refresh token at POST /v1/tokens');
    case 'legacy':
      return new DomainError('TOKEN_EXPIRED', 'a token of the pre-session format is no longer an access token; exchange it at POST /v1/tokens');
  }
}

export function requireBuyer(tokens: Tokens, revoked: Pick<RevokedSessions, 'has'>): onRequestHookHandler {
  return (request: FastifyRequest, _reply: FastifyReply, done) => {
    const check = tokens.verify(bearer(request));
    if (!check.ok) throw refused(check.reason);
    if (revoked.has(check.sessionId)) throw new DomainError('TOKEN_REVOKED', 'this session was ended (signed out, or revoked by an admin)');
    request.buyerId = check.userId;
    request.sessionId = check.sessionId;
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
    // Any token signed for a buyer, expired or of the old format too, is a buyer's: refreshing it would not help.
    const check = tokens.verify(token);
    if (check.ok || check.reason !== 'invalid') {
      throw new DomainError('FORBIDDEN', 'admin routes need the admin token');
    }
    throw new DomainError('UNAUTHORIZED', 'the token is not valid');
  };
}
