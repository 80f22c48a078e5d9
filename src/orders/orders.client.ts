/** What the HTTP shell and the audit may ask of orders. */
import type { AuditOrder } from '../audit/audit.types.js';
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
}

export interface OrdersClient {
  /**
   * Mints the order id, has inventory reserve under it, records the order `held`. Throws a
   * `DomainError` naming the refusal (`SOLD_OUT`, `LIMIT_EXCEEDED`, …).
   */
  purchase(buyerId: string, request: PurchaseRequest): Promise<Order>;
  /** The buyer's own order; another buyer's is `ORDER_NOT_FOUND`. */
  getOrder(buyerId: string, orderId: string): Promise<Order>;
  listForBuyer(buyerId: string, limit?: number): Promise<Order[]>;
  /** Orders that exist among `ids` (bench checks every 2xx has its order). */
  existing(ids: readonly string[]): Promise<Set<string>>;
  auditOrders(productId: string): Promise<readonly AuditOrder[]>;
}
