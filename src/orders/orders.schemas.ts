/** Orders' response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { dateTime, enumOf, objectSchema, ref, uuid } from '../http/schemas.js';
import type { Order, OrdersPage, OrderStatus } from './orders.client.js';

export const ORDER_STATUSES = enumOf<OrderStatus>({ held: true, paid: true, expired: true, cancelled: true });

export const orderSchema = objectSchema<Order>('Order', 'An order: `held` until paid, cancelled or expired', {
  id: uuid,
  status: { type: 'string', enum: ORDER_STATUSES },
  buyerId: uuid,
  productId: uuid,
  quantity: { type: 'integer', minimum: 1 },
  amountCents: { type: 'integer', minimum: 0 },
  expiresAt: { ...dateTime, description: 'When the hold lapses unless paid (by the database clock)' },
  createdAt: dateTime,
});

/** The answer of the routes that act on one order: `{ order }`. */
export const orderAnswerSchema = objectSchema<{ order: Order }>('OrderAnswer', 'One order', { order: ref('Order') });

export const ordersPageSchema = objectSchema<OrdersPage>('OrdersPage', "A page of a product's orders, newest first", {
  orders: { type: 'array', items: ref('Order') },
  total: { type: 'integer', minimum: 0, description: 'Orders matching the filter, on all pages' },
  nextOffset: { type: ['integer', 'null'], minimum: 0, description: 'The next page\'s `offset`; `null` on the last page' },
});

export const ordersSchemas = [orderSchema, orderAnswerSchema, ordersPageSchema] as const;
