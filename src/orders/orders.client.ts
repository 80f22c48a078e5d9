/** What the HTTP shell and the audit may ask of orders. */
import type { AuditOrder } from '../audit/audit.types.js';
import type { DomainError } from '../infra/errors.js';
import type { AllocationStatus } from '../inventory/inventory.types.js';
import type { HeldKey, IdempotencyStore } from './idempotency.js';

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

/** A purchase's outcome: the order, the refusal, or `withdrawn` when `alongReserve` said no (nothing stays reserved). */
export type PurchaseOutcome =
  | { readonly ok: true; readonly order: Order }
  | { readonly ok: false; readonly refusal: DomainError }
  | { readonly ok: false; readonly withdrawn: true };

/** One page of a product's orders, newest first; `nextOffset` is `null` on the last page. */
export interface OrdersPage {
  readonly orders: readonly Order[];
  readonly total: number;
  readonly nextOffset: number | null;
}

export interface OrdersClient {
  /**
   * Mints the order id, has inventory reserve under it, records the order `held` (and with
   * `pay`, pays it). A refusal (`SOLD_OUT`, `LIMIT_EXCEEDED`, …) is returned, not thrown (faults
   * still throw): at a drop nearly every buyer is refused, and a thrown refusal costs each of them
   * V8's rejection tracking at every `await` it passes on its way to the route. With
   * `idempotencyKey` (held by the caller), the answer `201 { order }` is stored under it; a held
   * order's answer is written in the statement that records the order. `alongReserve` is called
   * once, as the store is asked to reserve and side by side with it (never for a buyer refused from
   * memory or while waiting in line); `false` withdraws the purchase and undoes the reservation.
   * The route claims the key there.
   */
  tryPurchase(buyerId: string, request: PurchaseRequest, idempotencyKey?: HeldKey, alongReserve?: () => Promise<boolean>): Promise<PurchaseOutcome>;
  /**
   * Debits the buyer (once per order), confirms the hold, marks the order `paid`. Throws
   * `INSUFFICIENT_FUNDS` (the hold stays), `HOLD_EXPIRED` (refunded, unit back in stock),
   * `ORDER_NOT_PAYABLE`, `ORDER_ALREADY_PAID`, `ORDER_NOT_FOUND`.
   */
  pay(buyerId: string, orderId: string): Promise<Order>;
  /** Releases a held order's units at once. Throws `ORDER_NOT_CANCELLABLE`, `ORDER_NOT_FOUND`. */
  cancel(buyerId: string, orderId: string): Promise<Order>;
  /** The buyer's own order; another buyer's is `ORDER_NOT_FOUND`. */
  getOrder(buyerId: string, orderId: string): Promise<Order>;
  listForBuyer(buyerId: string, limit?: number): Promise<Order[]>;
  /** A product's orders for the admin, newest first. Throws `PRODUCT_NOT_FOUND`. */
  listForProduct(productId: string, page: { limit: number; offset: number; status?: OrderStatus }): Promise<OrdersPage>;
  /** Orders that exist among `ids` (bench checks every 2xx has its order). */
  existing(ids: readonly string[]): Promise<Set<string>>;
  auditOrders(productId: string): Promise<readonly AuditOrder[]>;
  /** Buyer-scoped idempotency keys of purchases and payments. */
  readonly idempotency: IdempotencyStore;
}
