/**
 * What the HTTP shell and the audit may ask of orders. Every argument and result is plain,
 * JSON-serialisable data, so in split mode an HTTP client implements the same interface; a
 * refusal comes back as data (`CheckoutOutcome`), a fault is thrown.
 */
import type { PlacedOrder } from '../pipeline/order-events.js';
import type { AuditOrdersPage, AuditPage } from '../audit/audit.types.js';
import type { Refusal } from '../infra/errors.js';
import type { AllocationStatus } from '../inventory/inventory.types.js';

export type OrderStatus = AllocationStatus;

export interface Order {
  readonly id: string;
  readonly status: OrderStatus;
  readonly buyerId: string;
  readonly productId: string;
  readonly quantity: number;
  readonly amountCents: number;
  readonly expiresAt: string;
  readonly createdAt: string;
}

export interface PurchaseRequest {
  readonly productId: string;
  readonly quantity: number;
  /** Instant mode: reserve and pay in one call (the hold is released if the debit fails). */
  readonly pay?: boolean;
}

/**
 * What a purchase or a payment ends with: the order, or the refusal that names why not.
 * `replayed`: the outcome an `Idempotency-Key` kept from the first request with it.
 */
export type CheckoutOutcome =
  | { readonly ok: true; readonly order: Order; readonly replayed?: true }
  | { readonly ok: false; readonly refusal: Refusal; readonly replayed?: true };

/** One page of a product's orders, newest first; `nextAfter` is `null` on the last page. */
export interface OrdersPage {
  readonly orders: readonly Order[];
  /** The next page's `after` (the id of this page's last order). */
  readonly nextAfter: string | null;
}

/**
 * One change of an order, as the outbox keeps it and as RabbitMQ carries it (docs/order-events.md).
 * `id` is what a consumer deduplicates on; `seq` orders the events (an order's events have
 * increasing `seq`).
 */
export interface OrderEvent {
  readonly id: string;
  readonly seq: number;
  /** The order's new status: `held` when it is recorded, then `paid`, `expired` or `cancelled`. */
  readonly kind: OrderStatus;
  readonly orderId: string;
  readonly occurredAt: string;
  /** The order as the API showed it once the change was made. */
  readonly order: Order;
}

/** A page of the order events, by `seq`; `nextAfter` is the next request's `after`. */
export interface OrderEventsPage {
  readonly events: readonly OrderEvent[];
  readonly nextAfter: number;
}

export interface OrdersClient {
  /**
   * Mints the order id, has inventory reserve under it, records the order `held` (and with
   * `pay`, pays it). Refusals (`SOLD_OUT`, `LIMIT_EXCEEDED`, …) are returned, not thrown: at a
   * drop nearly every buyer is refused, and a thrown refusal costs each of them V8's rejection
   * tracking at every `await` on its way to the route. With an `idempotencyKey` the first
   * definitive outcome is kept under it and replayed to a repeat (see `idempotency.ts`).
   */
  purchase(buyerId: string, request: PurchaseRequest, idempotencyKey?: string): Promise<CheckoutOutcome>;
  /**
   * Debits the buyer (once per order), confirms the hold, marks the order `paid`. Refuses
   * `INSUFFICIENT_FUNDS` (the hold stays), `HOLD_EXPIRED` (refunded, unit back in stock),
   * `ORDER_NOT_PAYABLE`, `ORDER_ALREADY_PAID`, `ORDER_NOT_FOUND`. Honours an `idempotencyKey` as
   * `purchase` does.
   */
  pay(buyerId: string, orderId: string, idempotencyKey?: string): Promise<CheckoutOutcome>;
  /** Releases a held order's units at once. Throws `ORDER_NOT_CANCELLABLE`, `ORDER_NOT_FOUND`. */
  cancel(buyerId: string, orderId: string): Promise<Order>;
  /** The buyer's own order; another buyer's is `ORDER_NOT_FOUND`. */
  getOrder(buyerId: string, orderId: string): Promise<Order>;
  listForBuyer(buyerId: string, limit?: number): Promise<Order[]>;
  /**
   * A product's orders for the admin, newest first, the page after the order `after` (keyset
   * paging: every page costs the same, however deep). Throws `PRODUCT_NOT_FOUND`, and
   * `VALIDATION_FAILED` when `after` is not an order of the product.
   */
  listForProduct(productId: string, page: { limit: number; after?: string; status?: OrderStatus }): Promise<OrdersPage>;
  /** Which of `ids` have no order (bench checks every 2xx has its order). */
  missing(ids: readonly string[]): Promise<string[]>;
  /** A page of the product's orders after the order `page.after`, oldest first (for the audit). */
  auditOrders(productId: string, page: AuditPage): Promise<AuditOrdersPage>;
  /**
   * The order events numbered above `after`, oldest first, at most `limit`: only events below
   * which no other can still appear, so a consumer that pages on with `nextAfter` misses none.
   */
  events(page: { after: number; limit: number }): Promise<OrderEventsPage>;
  /**
   * The order pipeline's write: each placed order's hold in inventory, then the order (and its
   * key) here, idempotent by order id. An order whose hold the reconciler voided is not recorded.
   */
  recordPlaced(orders: readonly PlacedOrder[]): Promise<void>;
  /**
   * Gives up placed orders the pipeline will never write (refused by a check, or out of
   * deliveries): those with no order are voided and their units go back; a payment of one answers
   * `HOLD_EXPIRED`.
   */
  abandonPlaced(orders: readonly PlacedOrder[]): Promise<void>;
}
