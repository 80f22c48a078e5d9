/**
 * Orders' HTTP routes: the purchase (optionally instant: reserve and pay), pay, cancel, the
 * buyer's own orders, and the admin's list of a product's orders. Purchase and pay honour an
 * `Idempotency-Key` scoped to the buyer; without one they cost nothing extra.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { problem, PROBLEM_CONTENT_TYPE, sendProblem, type Problem } from '../http/problem.js';
import { bearerSecurity, idParams, uuid } from '../http/schemas.js';
import { requestHash, type KnownAnswer } from './idempotency.js';
import type { Order, OrdersClient, OrderStatus, PurchaseRequest } from './orders.client.js';

/** Larger quantities are malformed requests, not "sold out". */
export const MAX_QUANTITY = 1000;
/** Largest page of the admin's order list. */
export const MAX_PAGE = 500;

const purchaseBody = {
  type: 'object',
  additionalProperties: false,
  required: ['productId', 'quantity'],
  properties: {
    productId: uuid,
    quantity: { type: 'integer', minimum: 1, maximum: MAX_QUANTITY },
    pay: { type: 'boolean' },
  },
} as const;

/** `Idempotency-Key`: 1–200 visible ASCII characters (a UUID is the usual choice). */
const idempotencyHeaders = {
  type: 'object',
  properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7E]+$' } },
} as const;

/** Query strings arrive as strings (no type coercion): numbers are checked by pattern, then parsed. */
const productOrdersQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'string', pattern: '^[1-9][0-9]{0,2}$' },
    offset: { type: 'string', pattern: '^(0|[1-9][0-9]{0,8})$' },
    status: { type: 'string', enum: ['held', 'paid', 'expired', 'cancelled'] },
  },
} as const;

export interface OrdersRouteGuards {
  readonly buyer: preHandlerHookHandler;
  readonly admin: preHandlerHookHandler;
  /** Per-buyer rate limit on purchase and pay; absent when the limiter is off. */
  readonly rateLimit?: preHandlerHookHandler;
}

interface Answer {
  readonly statusCode: number;
  readonly body: unknown;
  /** The work stored this answer under the key itself (with the order, in one statement). */
  readonly stored?: boolean;
}

/** What a route's work ends with: an answer, or a refusal it returns rather than throws. */
type Outcome = Answer | DomainError;

/** A refusal that a retry with the same key must be allowed to redo (never stored). */
function isDefinitive(error: DomainError): boolean {
  return error.status < 500 && error.code !== 'CONTENTION';
}

/**
 * Runs `work` once per (buyer, key): a repeat of the same request gets the stored first answer.
 * Without a key it simply runs. `work` is given the claimed key, so it may store its answer in
 * its own last statement (`stored`) rather than cost another round trip here. A refusal known
 * before any work (`knownRefusal`, asked when the claim is sent) is stored with the claim itself:
 * one statement, not two.
 */
async function idempotent(
  orders: OrdersClient,
  request: FastifyRequest,
  reply: FastifyReply,
  scope: string,
  work: (claimedKey: string | undefined) => Promise<Outcome>,
  knownRefusal?: () => DomainError | undefined,
): Promise<FastifyReply> {
  const header = request.headers['idempotency-key'];
  const key = typeof header === 'string' ? header : undefined;
  if (key === undefined) {
    const answer = await work(undefined);
    if (answer instanceof DomainError) return sendProblem(reply, problemOf(answer, request), answer.retryAfterSeconds);
    return reply.status(answer.statusCode).send(answer.body);
  }
  const store = orders.idempotency;
  const hash = requestHash(scope, request.body ?? null);
  // Asked when the claim goes to the database, not now: a claim that waits for its statement
  // while the last unit goes is stored with its refusal, and the buyer skips the work.
  let refusal: DomainError | undefined;
  const known = knownRefusal && ((): KnownAnswer | undefined => {
    refusal = knownRefusal();
    return refusal && { statusCode: refusal.status, response: problemOf(refusal, request) };
  });
  const claim = await store.claim(request.buyerId, key, scope, hash, known);
  // The stored problem is the one sent: built once, not again by the error handler.
  if (claim.kind === 'claimed' && claim.answered) return sendProblem(reply, claim.answered.response as Problem, refusal?.retryAfterSeconds);
  if (claim.kind === 'replay') {
    void reply.header('idempotent-replayed', 'true');
    if (claim.statusCode >= 400) {
      return reply.status(claim.statusCode).header('content-type', PROBLEM_CONTENT_TYPE).send(JSON.stringify(claim.response));
    }
    return reply.status(claim.statusCode).send(claim.response);
  }
  let answer: Outcome;
  try {
    answer = await work(key);
  } catch (error) {
    if (!(error instanceof DomainError && isDefinitive(error))) {
      await abandon(store, request, key);
      throw error;
    }
    answer = error;
  }
  if (answer instanceof DomainError) {
    if (isDefinitive(answer)) return storeRefusal(store, request, reply, key, answer);
    await abandon(store, request, key);
    // Rare (CONTENTION, a fault named by the domain): the error handler answers and logs it.
    throw answer;
  }
  if (answer.stored !== true) await store.complete(request.buyerId, key, answer.statusCode, answer.body);
  return reply.status(answer.statusCode).send(answer.body);
}

function problemOf(error: DomainError, request: FastifyRequest): Problem {
  return problem(error.code, error.message, error.extras, request.url);
}

/** Drops the claim of an answer that is not definitive, so the same key may retry. */
async function abandon(store: OrdersClient['idempotency'], request: FastifyRequest, key: string): Promise<void> {
  await store.abandon(request.buyerId, key).catch((abandonError: unknown) => {
    request.log.error({ err: abandonError }, 'could not release an idempotency key');
  });
}

/** Stores a definitive refusal under the claimed key and sends it. */
async function storeRefusal(
  store: OrdersClient['idempotency'],
  request: FastifyRequest,
  reply: FastifyReply,
  key: string,
  error: DomainError,
): Promise<FastifyReply> {
  const refused = problemOf(error, request);
  // The buyer still gets the refusal if storing it fails; the key then waits out its claim.
  await store.complete(request.buyerId, key, error.status, refused).catch((completeError: unknown) => {
    request.log.error({ err: completeError }, 'could not store a refusal under its idempotency key');
  });
  return sendProblem(reply, refused, error.retryAfterSeconds);
}

export function ordersRoutes(orders: OrdersClient, guards: OrdersRouteGuards) {
  const { buyer, admin } = guards;
  const limited = guards.rateLimit ? [buyer, guards.rateLimit] : [buyer];
  return (app: FastifyInstance): void => {
    app.post<{ Body: PurchaseRequest }>(
      '/v1/purchases',
      {
        preHandler: limited,
        schema: {
          tags: ['purchases'],
          summary: 'Reserve units: 201 with a held order (or, with "pay": true, a paid one), or a problem naming the refusal',
          body: purchaseBody,
          headers: idempotencyHeaders,
          security: bearerSecurity,
        },
      },
      async (request, reply) =>
        idempotent(
          orders,
          request,
          reply,
          'purchase',
          async (key) => {
            const outcome = await orders.tryPurchase(request.buyerId, request.body, key);
            return outcome.ok ? { statusCode: 201, body: { order: outcome.order }, stored: key !== undefined } : outcome.refusal;
          },
          () => orders.refusalFromMemory(request.body),
        ),
    );

    app.post<{ Params: { id: string } }>(
      '/v1/orders/:id/pay',
      {
        preHandler: limited,
        schema: {
          tags: ['orders'],
          summary: 'Pay a held order: debit the balance, confirm the hold → paid',
          params: idParams,
          headers: idempotencyHeaders,
          security: bearerSecurity,
        },
      },
      async (request, reply) =>
        idempotent(orders, request, reply, `pay:${request.params.id}`, async () => ({
          statusCode: 200,
          body: { order: await orders.pay(request.buyerId, request.params.id) },
        })),
    );

    app.post<{ Params: { id: string } }>(
      '/v1/orders/:id/cancel',
      {
        preHandler: buyer,
        schema: { tags: ['orders'], summary: 'Cancel a held order: its units go back at once', params: idParams, security: bearerSecurity },
      },
      async (request) => ({ order: await orders.cancel(request.buyerId, request.params.id) }),
    );

    app.get<{ Params: { id: string } }>(
      '/v1/orders/:id',
      { preHandler: buyer, schema: { tags: ['orders'], summary: 'One of your orders', params: idParams, security: bearerSecurity } },
      async (request) => ({ order: await orders.getOrder(request.buyerId, request.params.id) }),
    );

    app.get<{ Params: { id: string }; Querystring: { limit?: string; offset?: string; status?: OrderStatus } }>(
      '/v1/admin/products/:id/orders',
      {
        preHandler: admin,
        schema: {
          tags: ['admin'],
          summary: "A product's orders, newest first (limit 1–500, default 100; offset; status)",
          params: idParams,
          querystring: productOrdersQuery,
          security: bearerSecurity,
        },
      },
      async (request) => {
        const limit = Number(request.query.limit ?? '100');
        if (limit > MAX_PAGE) {
          throw new DomainError('VALIDATION_FAILED', `limit must be at most ${MAX_PAGE}`, {
            errors: [{ field: 'querystring.limit', message: `must be at most ${MAX_PAGE}` }],
          });
        }
        const page = await orders.listForProduct(request.params.id, {
          limit,
          offset: Number(request.query.offset ?? '0'),
          ...(request.query.status === undefined ? {} : { status: request.query.status }),
        });
        return page satisfies { orders: readonly Order[] };
      },
    );
  };
}
