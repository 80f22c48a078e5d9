/**
 * Users' HTTP routes: sign-up, the exchange of a refresh token for an access token, signing out,
 * bulk creation of buyers for drills and bench, an admin's revocation of a user, and admin credits.
 * Every answer that carries a token or refresh token is sent `Cache-Control: no-store`, so no
 * cache between the server and the buyer keeps one.
 */
import type { FastifyInstance, FastifyReply, onRequestHookHandler } from 'fastify';
import { ADMIN_PROBLEMS, BODY_PROBLEMS, BUYER_PROBLEMS, responses } from '../http/response-schemas.js';
import { bearerSecurity, idParams, ref, text } from '../http/schemas.js';
import type { RevokedSessions } from './revoked-sessions.js';
import type { UsersClient } from './users.client.js';

/** Enough for the 10,000-buyer stampede in one call. */
export const MAX_USERS_PER_CALL = 20_000;

export interface UsersRouteGuards {
  readonly admin: onRequestHookHandler;
  /** The buyer guard, then the per-buyer limits. */
  readonly buyer: onRequestHookHandler[];
  /** The sign-up rate limit per client address, when it is on. */
  readonly signupLimit?: onRequestHookHandler;
  /** This process's view of ended sessions: a session ended here is refused here at once. */
  readonly revoked: Pick<RevokedSessions, 'add'>;
}

const noStore = {
  'Cache-Control': { type: 'string', enum: ['no-store'], description: 'The answer carries a credential: no cache may keep it' },
} as const;

/** The answer of a sign-out or a revocation. */
const revokedCount = {
  type: 'object',
  required: ['revokedSessions'],
  properties: { revokedSessions: { type: 'integer', minimum: 0, description: 'Sessions ended by this request' } },
} as const;

function noStoreReply(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store');
}

export function usersRoutes(users: UsersClient, guards: UsersRouteGuards) {
  const { admin, buyer, signupLimit, revoked } = guards;
  return (app: FastifyInstance): void => {
    app.post<{ Body: { name: string } }>(
      '/v1/users',
      {
        ...(signupLimit ? { onRequest: signupLimit } : {}),
        schema: {
          tags: ['users'],
          summary: 'Sign up; returns an access token and the refresh token that gets the next ones',
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            // Not blank, and no NUL.
            properties: { name: { ...text(1, 100), pattern: '^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$' } },
          },
          response: responses(
            { 201: { description: 'Signed up', ...ref('IssuedUser'), headers: noStore } },
            [...BODY_PROBLEMS, 'SIGNUP_RATE_LIMITED'],
          ),
        },
      },
      async (request, reply) => noStoreReply(reply).status(201).send(await users.signUp(request.body.name.trim())),
    );

    app.post<{ Body: { refreshToken: string } }>(
      '/v1/tokens',
      {
        schema: {
          tags: ['users'],
          summary: 'Exchange a refresh token (or a token of the pre-session format) for a fresh access token',
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['refreshToken'],
            properties: { refreshToken: { type: 'string', minLength: 1, maxLength: 300 } },
          },
          response: responses(
            { 200: { description: 'A new access token of the same session', ...ref('AccessToken'), headers: noStore } },
            [...BODY_PROBLEMS, 'UNAUTHORIZED', 'TOKEN_REVOKED'],
          ),
        },
      },
      async (request, reply) => noStoreReply(reply).send(await users.refresh(request.body.refreshToken)),
    );

    app.post(
      '/v1/me/sign-out',
      {
        onRequest: buyer,
        schema: {
          tags: ['users'],
          summary: "End this token's session: its refresh token and every access token issued from it",
          security: bearerSecurity,
          response: responses(
            {
              200: {
                description:
                  'Signed out: 1 session ended (0 if another process ended it a moment ago). With no password to sign in again, the account is out of reach from now on',
                ...revokedCount,
              },
            },
            [...BODY_PROBLEMS, ...BUYER_PROBLEMS],
          ),
        },
      },
      async (request) => {
        const ended = await users.signOut(request.buyerId, request.sessionId);
        if (ended) revoked.add([ended]);
        return { revokedSessions: ended ? 1 : 0 };
      },
    );

    app.post<{ Body: { count: number; balanceCents: number; namePrefix?: string } }>(
      '/v1/admin/users',
      {
        onRequest: admin,
        // Bulk creation returns one token per buyer: allow a larger body in the reply, not the request.
        schema: {
          tags: ['admin'],
          summary: 'Create many buyers at once, with a balance',
          security: bearerSecurity,
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['count', 'balanceCents'],
            properties: {
              count: { type: 'integer', minimum: 1, maximum: MAX_USERS_PER_CALL },
              balanceCents: { type: 'integer', minimum: 0, maximum: 100_000_000_000 },
              namePrefix: text(1, 50),
            },
          },
          response: responses(
            {
              201: {
                description: 'The buyers, named `<namePrefix><n>`, each with an access token and a refresh token',
                type: 'object',
                required: ['users'],
                properties: { users: { type: 'array', items: ref('IssuedUser') } },
                headers: noStore,
              },
            },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS],
          ),
        },
      },
      async (request, reply) => {
        const { count, balanceCents, namePrefix } = request.body;
        return noStoreReply(reply).status(201).send({ users: await users.createMany(count, balanceCents, namePrefix ?? 'buyer-') });
      },
    );

    app.post<{ Params: { id: string } }>(
      '/v1/admin/users/:id/revoke',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: "End every session of a buyer (and their pre-session token): the user's tokens are refused from now on",
          security: bearerSecurity,
          params: idParams,
          response: responses(
            {
              200: { description: 'How many sessions were ended now (0: none was open)', ...revokedCount },
            },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS, 'USER_NOT_FOUND'],
          ),
        },
      },
      async (request) => {
        const ended = await users.revokeUser(request.params.id);
        revoked.add(ended);
        return { revokedSessions: ended.length };
      },
    );

    app.post<{ Params: { id: string }; Body: { amountCents: number } }>(
      '/v1/admin/users/:id/credit',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: "Credit a buyer's balance (a ledger `credit` row); returns the user",
          security: bearerSecurity,
          params: idParams,
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['amountCents'],
            properties: { amountCents: { type: 'integer', minimum: 1, maximum: 100_000_000_000 } },
          },
          response: responses(
            {
              200: {
                description: 'The user with the new balance',
                type: 'object',
                required: ['user'],
                properties: { user: ref('User') },
              },
            },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS, 'USER_NOT_FOUND'],
          ),
        },
      },
      async (request) => ({ user: await users.credit(request.params.id, request.body.amountCents) }),
    );
  };
}
