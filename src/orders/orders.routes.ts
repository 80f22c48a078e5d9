/**
 * Orders' HTTP routes: the purchase (optionally instant: reserve and pay), pay, cancel, the
 * buyer's own orders, and the admin's list of a product's orders. Purchase and pay honour an
 * `Idempotency-Key` scoped to the buyer; without one they cost nothing extra.
 */
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { bearerSecurity, idParams, uuid } from '../http/schemas.js';
import { idempotent, WITHDRAWN } from './idempotent-route.js';
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
  readonly buyer: onRequestHookHandler;
  readonly admin: onRequestHookHandler;
  /** Per-buyer rate limit on purchase and pay; absent when the limiter is off. */
  readonly rateLimit?: onRequestHookHandler;
}

export function ordersRoutes(orders: OrdersClient, guards: OrdersRouteGuards) {
  const { buyer, admin } = guards;
  const limited = guards.rateLimit ? [buyer, guards.rateLimit] : [buyer];
  return (app: FastifyInstance): void => {
    app.post<{ Body: PurchaseRequest }>(
      '/v1/purchases',
      {
        onRequest: limited,
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
          orders.idempotency,
          request,
          reply,
          'purchase',
          async (held, claimKey) => {
            const outcome = await orders.tryPurchase(request.buyerId, request.body, held, claimKey);
            if (outcome.ok) return { statusCode: 201, body: { order: outcome.order }, stored: held !== undefined };
            return 'refusal' in outcome ? outcome.refusal : WITHDRAWN;
          },
          { claimLate: true },
        ),
    );

    app.post<{ Params: { id: string } }>(
      '/v1/orders/:id/pay',
      {
        onRequest: limited,
        schema: {
          tags: ['orders'],
          summary: 'Pay a held order: debit the balance, confirm the hold → paid',
          params: idParams,
          headers: idempotencyHeaders,
          security: bearerSecurity,
        },
      },
      async (request, reply) =>
        idempotent(orders.idempotency, request, reply, `pay:${request.params.id}`, async () => ({
          statusCode: 200,
          body: { order: await orders.pay(request.buyerId, request.params.id) },
        })),
    );

    app.post<{ Params: { id: string } }>(
      '/v1/orders/:id/cancel',
      {
        onRequest: buyer,
        schema: { tags: ['orders'], summary: 'Cancel a held order: its units go back at once', params: idParams, security: bearerSecurity },
      },
      async (request) => ({ order: await orders.cancel(request.buyerId, request.params.id) }),
    );

    app.get<{ Params: { id: string } }>(
      '/v1/orders/:id',
      { onRequest: buyer, schema: { tags: ['orders'], summary: 'One of your orders', params: idParams, security: bearerSecurity } },
      async (request) => ({ order: await orders.getOrder(request.buyerId, request.params.id) }),
    );

    app.get<{ Params: { id: string }; Querystring: { limit?: string; offset?: string; status?: OrderStatus } }>(
      '/v1/admin/products/:id/orders',
      {
        onRequest: admin,
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
