/** Orders' response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { dateTime, enumOf, objectSchema, ref, uuid } from '../http/schemas.js';
import type { Order, OrderEvent, OrderEventsPage, OrdersPage, OrderStatus } from './orders.client.js';

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
  nextAfter: { type: ['string', 'null'], pattern: uuid.pattern, description: 'The next page\'s `after` (this page\'s last order); `null` on the last page' },
});

export const orderEventSchema = objectSchema<OrderEvent>('OrderEvent', 'One change of an order, as the outbox keeps it and RabbitMQ carries it', {
  id: { ...uuid, description: 'The event\'s id: deduplicate on it (it is the same in every publish of the event)' },
  seq: { type: 'integer', minimum: 1, description: 'Its place among the events: an order\'s events have increasing `seq`; numbers may be skipped' },
  kind: { type: 'string', enum: ORDER_STATUSES, description: 'The order\'s new status' },
  orderId: uuid,
  occurredAt: dateTime,
  // The order as the API showed it once the change was made.
  order: ref('Order'),
});

export const orderEventsPageSchema = objectSchema<OrderEventsPage>('OrderEventsPage', 'A page of the order events, by `seq`', {
  events: { type: 'array', items: ref('OrderEvent') },
  nextAfter: { type: 'integer', minimum: 0, description: "The next request's `after`: the last event's `seq`, or this request's `after` when the page is empty" },
});

export const ordersSchemas = [orderSchema, orderAnswerSchema, ordersPageSchema, orderEventSchema, orderEventsPageSchema] as const;
