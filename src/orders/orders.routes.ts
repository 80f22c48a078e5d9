/**
 * Orders' HTTP routes: the purchase (optionally instant: reserve and pay), pay, cancel, the
 * buyer's own orders, the admin's list of a product's orders, and the feed of order events. Purchase and pay honour an
 * `Idempotency-Key` scoped to the buyer; without one they cost nothing extra.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { problem, sendProblem } from '../http/problem.js';
import { ADMIN_PROBLEMS, BODY_PROBLEMS, BUYER_PROBLEMS, responses } from '../http/response-schemas.js';
import { bearerSecurity, idParams, ref, uuidInput } from '../http/schemas.js';
import type { CheckoutOutcome, Order, OrdersClient, OrderStatus, PurchaseRequest } from './orders.client.js';

/** Larger quantities are malformed requests, not "sold out". */
export const MAX_QUANTITY = 1000;
/** Largest page of the admin's order list. */
export const MAX_PAGE = 500;
/** Largest page of the order events. */
export const MAX_EVENTS_PAGE = 1000;

const purchaseBody = {
  type: 'object',
  additionalProperties: false,
  required: ['productId', 'quantity'],
  properties: {
    productId: uuidInput,
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
    after: { ...uuidInput, description: "The previous page's `nextAfter`: the orders older than this one" },
    status: { type: 'string', enum: ['held', 'paid', 'expired', 'cancelled'] },
  },
} as const;

const orderEventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    after: { type: 'string', pattern: '^(0|[1-9][0-9]{0,14})$', description: 'Events with a `seq` above this (default 0: from the first kept)' },
    limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$', description: `At most this many (1–${MAX_EVENTS_PAGE}, default 100)` },
  },
} as const;

/** The request's `Idempotency-Key` (the schema has checked its form), if it sent one. */
function idempotencyKey(request: FastifyRequest): string | undefined {
  const header = request.headers['idempotency-key'];
  return typeof header === 'string' ? header : undefined;
}

/** Answers an outcome: `status` with the order, or the refusal's problem; a kept one is marked replayed. */
function sendOutcome(request: FastifyRequest, reply: FastifyReply, outcome: CheckoutOutcome, status: number): FastifyReply {
  if (outcome.replayed === true) void reply.header('idempotent-replayed', 'true');
  if (outcome.ok) return reply.status(status).send({ order: outcome.order });
  const { code, detail, extras, retryAfterSeconds } = outcome.refusal;
  return sendProblem(reply, problem(code, detail, extras, request.url), retryAfterSeconds);
}

export interface OrdersRouteGuards {
  /** The buyer guard, then the per-buyer limits (rate and requests in flight), on every buyer route. */
  readonly buyer: onRequestHookHandler[];
  readonly admin: onRequestHookHandler;
}

export function ordersRoutes(orders: OrdersClient, guards: OrdersRouteGuards) {
  const { buyer, admin } = guards;
  return (app: FastifyInstance): void => {
    app.post<{ Body: PurchaseRequest }>(
      '/v1/purchases',
      {
        onRequest: buyer,
        schema: {
          tags: ['purchases'],
          summary: 'Reserve units: 201 with a held order (or, with "pay": true, a paid one), or a problem naming the refusal',
          body: purchaseBody,
          headers: idempotencyHeaders,
          security: bearerSecurity,
          response: responses(
            { 201: { description: 'The order: `held` until `expiresAt`, or `paid` with `"pay": true`', ...ref('OrderAnswer') } },
            [
              ...BODY_PROBLEMS,
              ...BUYER_PROBLEMS,
              'PRODUCT_NOT_FOUND',
              'STRATEGY_UNAVAILABLE',
              'SOLD_OUT',
              'SALE_NOT_OPEN',
              'SALE_ENDED',
              'ACCOUNT_TOO_NEW',
              'LIMIT_EXCEEDED',
              'CONTENTION',
              'IDEMPOTENCY_IN_PROGRESS',
              'IDEMPOTENCY_KEY_REUSED',
              // Instant mode's payment.
              'INSUFFICIENT_FUNDS',
              'HOLD_EXPIRED',
              'ORDER_NOT_PAYABLE',
              'USER_NOT_FOUND',
            ],
            { idempotent: true },
          ),
        },
      },
      async (request, reply) =>
        sendOutcome(request, reply, await orders.purchase(request.buyerId, request.body, idempotencyKey(request)), 201),
    );

    app.post<{ Params: { id: string } }>(
      '/v1/orders/:id/pay',
      {
        onRequest: buyer,
        schema: {
          tags: ['orders'],
          summary: 'Pay a held order: debit the balance, confirm the hold → paid',
          params: idParams,
          headers: idempotencyHeaders,
          security: bearerSecurity,
          response: responses(
            { 200: { description: 'The order, `paid`', ...ref('OrderAnswer') } },
            [
              ...BODY_PROBLEMS,
              ...BUYER_PROBLEMS,
              'ORDER_NOT_FOUND',
              'USER_NOT_FOUND',
              'INSUFFICIENT_FUNDS',
              'ORDER_ALREADY_PAID',
              'ORDER_NOT_PAYABLE',
              'HOLD_EXPIRED',
              'STRATEGY_UNAVAILABLE',
              'IDEMPOTENCY_IN_PROGRESS',
              'IDEMPOTENCY_KEY_REUSED',
            ],
            { idempotent: true },
          ),
        },
      },
      async (request, reply) =>
        sendOutcome(request, reply, await orders.pay(request.buyerId, request.params.id, idempotencyKey(request)), 200),
    );

    app.post<{ Params: { id: string } }>(
      '/v1/orders/:id/cancel',
      {
        onRequest: buyer,
        schema: {
          tags: ['orders'],
          summary: 'Cancel a held order: its units go back at once',
          params: idParams,
          security: bearerSecurity,
          response: responses(
            { 200: { description: 'The order, `cancelled`', ...ref('OrderAnswer') } },
            [...BODY_PROBLEMS, ...BUYER_PROBLEMS, 'ORDER_NOT_FOUND', 'ORDER_NOT_CANCELLABLE', 'STRATEGY_UNAVAILABLE'],
          ),
        },
      },
      async (request) => ({ order: await orders.cancel(request.buyerId, request.params.id) }),
    );

    app.get<{ Params: { id: string } }>(
      '/v1/orders/:id',
      {
        onRequest: buyer,
        schema: {
          tags: ['orders'],
          summary: 'One of your orders',
          params: idParams,
          security: bearerSecurity,
          response: responses({ 200: { description: 'The order', ...ref('OrderAnswer') } }, ['VALIDATION_FAILED', ...BUYER_PROBLEMS, 'ORDER_NOT_FOUND']),
        },
      },
      async (request) => ({ order: await orders.getOrder(request.buyerId, request.params.id) }),
    );

    app.get<{ Params: { id: string }; Querystring: { limit?: string; after?: string; status?: OrderStatus } }>(
      '/v1/admin/products/:id/orders',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: "A product's orders, newest first (limit 1–500, default 100; after: the previous page's nextAfter; status)",
          params: idParams,
          querystring: productOrdersQuery,
          security: bearerSecurity,
          response: responses(
            { 200: { description: 'One page of the orders', ...ref('OrdersPage') } },
            ['VALIDATION_FAILED', ...ADMIN_PROBLEMS, 'PRODUCT_NOT_FOUND'],
          ),
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
          ...(request.query.after === undefined ? {} : { after: request.query.after }),
          ...(request.query.status === undefined ? {} : { status: request.query.status }),
        });
        return page satisfies { orders: readonly Order[] };
      },
    );

    app.get<{ Querystring: { after?: string; limit?: string } }>(
      '/v1/admin/order-events',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: `The order events (held, paid, expired, cancelled) with a seq above after, oldest first (limit 1–${MAX_EVENTS_PAGE}, default 100): what the relay publishes to RabbitMQ, to poll`,
          querystring: orderEventsQuery,
          security: bearerSecurity,
          response: responses({ 200: { description: 'One page of the events', ...ref('OrderEventsPage') } }, ['VALIDATION_FAILED', ...ADMIN_PROBLEMS]),
        },
      },
      async (request) => {
        const limit = Number(request.query.limit ?? '100');
        if (limit > MAX_EVENTS_PAGE) {
          throw new DomainError('VALIDATION_FAILED', `limit must be at most ${MAX_EVENTS_PAGE}`, {
            errors: [{ field: 'querystring.limit', message: `must be at most ${MAX_EVENTS_PAGE}` }],
          });
        }
        return orders.events({ after: Number(request.query.after ?? '0'), limit });
      },
    );
  };
}
