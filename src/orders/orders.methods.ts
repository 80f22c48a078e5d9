/**
 * How each `OrdersClient` method crosses to an orders service in another process (see
 * `src/infra/service-methods.ts`): the reads, and the writes with the order each may change.
 */
import type { ServiceMethods } from '../infra/service-methods.js';
import type { OrdersClient } from './orders.client.js';

/** `pay` and `cancel` name the order second, after the buyer. */
const orderOf = (args: readonly unknown[]): string | undefined => (typeof args[1] === 'string' ? args[1] : undefined);

export const ORDERS_METHODS: ServiceMethods<OrdersClient> = {
  // The order id of a keyed purchase is derived inside; the buyer retries with the same key.
  purchase: { kind: 'write' },
  pay: { kind: 'write', orderId: orderOf },
  cancel: { kind: 'write', orderId: orderOf },
  getOrder: { kind: 'read' },
  listForBuyer: { kind: 'read' },
  listForProduct: { kind: 'read' },
  missing: { kind: 'read' },
  auditOrders: { kind: 'read' },
  events: { kind: 'read' },
  recordPlaced: { kind: 'write' },
  abandonPlaced: { kind: 'write' },
};
