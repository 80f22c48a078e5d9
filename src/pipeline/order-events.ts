/**
 * The order pipeline's one message: an order the Redis gate granted, on its way to PostgreSQL.
 * Plain JSON; the consumer writes it idempotently by `orderId`, so a redelivery, a second publish
 * by a retry, or a write made early (a payment that arrived first) changes nothing the second time.
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

/** The message's JSON read back, or why it is not one (such a message is dead-lettered, not retried). */
export function parsePlacedOrder(body: unknown): PlacedOrder | { readonly invalid: string } {
  if (body === null || typeof body !== 'object') return { invalid: 'not a JSON object' };
  const event = body as Record<string, unknown>;
  for (const field of ['orderId', 'productId', 'buyerId', 'expiresAt', 'placedAt'] as const) {
    if (typeof event[field] !== 'string') return { invalid: `${field} is not a string` };
  }
  for (const field of ['quantity', 'amountCents'] as const) {
    if (!Number.isInteger(event[field])) return { invalid: `${field} is not a whole number` };
  }
  return body as PlacedOrder;
}
