/** Users' HTTP routes: sign-up, bulk creation of buyers for drills and bench, and admin credits. */
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { ADMIN_PROBLEMS, BODY_PROBLEMS, responses } from '../http/response-schemas.js';
import { bearerSecurity, idParams, ref } from '../http/schemas.js';
import type { UsersClient } from './users.client.js';

/** Enough for the 10,000-buyer stampede in one call. */
export const MAX_USERS_PER_CALL = 20_000;

export function usersRoutes(users: UsersClient, admin: onRequestHookHandler) {
  return (app: FastifyInstance): void => {
    app.post<{ Body: { name: string } }>(
      '/v1/users',
      {
        schema: {
          tags: ['users'],
          summary: 'Sign up; returns the buyer token',
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: { name: { type: 'string', minLength: 1, maxLength: 100, pattern: '\\S' } },
          },
          response: responses({ 201: { description: 'Signed up', ...ref('IssuedUser') } }, BODY_PROBLEMS),
        },
      },
      async (request, reply) => reply.status(201).send(await users.signUp(request.body.name.trim())),
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
              namePrefix: { type: 'string', minLength: 1, maxLength: 50 },
            },
          },
          response: responses(
            {
              201: {
                description: 'The buyers, named `<namePrefix><n>`, each with a token',
                type: 'object',
                required: ['users'],
                properties: { users: { type: 'array', items: ref('IssuedUser') } },
              },
            },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS],
          ),
        },
      },
      async (request, reply) => {
        const { count, balanceCents, namePrefix } = request.body;
        return reply.status(201).send({ users: await users.createMany(count, balanceCents, namePrefix ?? 'buyer-') });
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
