/**
 * The order pipeline's message: orders the Redis gate granted, on their way to PostgreSQL. Plain
 * JSON; the consumer writes each idempotently by `orderId`, so a redelivery, a second publish by a
 * retry, or a write made early (a payment that arrived first) changes nothing the second time.
 */

/** The buyer's `Idempotency-Key`, as the key's row in orders' database is written with the order. */
export interface PlacedKey {
  readonly key: string;
  readonly claimId: string;
  readonly scope: string;
  readonly hash: string;
  /** `false`: an instant purchase, whose key is claimed with the order and answered once paid. */
  readonly answered: boolean;
}

export interface PlacedOrder {
  readonly orderId: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly amountCents: number;
  /** When the hold expires, by Redis's clock (ISO). */
  readonly expiresAt: string;
  /** When the gate granted it (ISO): the order's `createdAt`, the same in the answer and in the row. */
  readonly placedAt: string;
  readonly key?: PlacedKey;
}

/**
 * One message: the orders placed in one event-loop turn of one process. A message costs the
 * broker (a quorum-queue append and its confirm) and both clients (frames, a socket write) the
 * same whatever it carries, so a storm's orders travel together; each is still written, and is
 * idempotent, by its own id.
 */
export interface PlacedOrders {
  readonly orders: readonly PlacedOrder[];
}

function invalidOrder(body: unknown): string | undefined {
  if (body === null || typeof body !== 'object') return 'an order is not a JSON object';
  const event = body as Record<string, unknown>;
  for (const field of ['orderId', 'productId', 'buyerId', 'expiresAt', 'placedAt'] as const) {
    if (typeof event[field] !== 'string') return `${field} is not a string`;
  }
  for (const field of ['quantity', 'amountCents'] as const) {
    if (!Number.isInteger(event[field])) return `${field} is not a whole number`;
  }
  return undefined;
}

/** The message's JSON read back, or why it is not one (such a message is dead-lettered, not retried). */
export function parsePlacedOrders(body: unknown): PlacedOrders | { readonly invalid: string } {
  const orders = (body as { orders?: unknown } | null)?.orders;
  if (!Array.isArray(orders) || orders.length === 0) return { invalid: 'not a list of placed orders' };
  for (const order of orders) {
    const invalid = invalidOrder(order);
    if (invalid !== undefined) return { invalid };
  }
  return { orders: orders as PlacedOrder[] };
}
