/** Orders' HTTP routes: the purchase, and the buyer's own orders. */
import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import { bearerSecurity, idParams, uuid } from '../http/schemas.js';
import type { OrdersClient, PurchaseRequest } from './orders.client.js';

/** Larger quantities are malformed requests, not "sold out". */
export const MAX_QUANTITY = 1000;

const purchaseBody = {
  type: 'object',
  additionalProperties: false,
  required: ['productId', 'quantity'],
  properties: {
    productId: uuid,
    quantity: { type: 'integer', minimum: 1, maximum: MAX_QUANTITY },
  },
} as const;

export function ordersRoutes(orders: OrdersClient, buyer: preHandlerHookHandler) {
  return (app: FastifyInstance): void => {
    app.post<{ Body: PurchaseRequest }>(
      '/v1/purchases',
      {
        preHandler: buyer,
        schema: {
          tags: ['purchases'],
          summary: 'Reserve units: 201 with a held order, or a problem naming the refusal',
          body: purchaseBody,
          security: bearerSecurity,
        },
      },
      async (request, reply) => {
        const order = await orders.purchase(request.buyerId, request.body);
        return reply.status(201).send({ order });
      },
    );

    app.get<{ Params: { id: string } }>(
      '/v1/orders/:id',
      { preHandler: buyer, schema: { tags: ['orders'], summary: 'One of your orders', params: idParams, security: bearerSecurity } },
      async (request) => ({ order: await orders.getOrder(request.buyerId, request.params.id) }),
    );
  };
}
