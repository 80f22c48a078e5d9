/**
 * What the other modules may ask of inventory. In one process the client is the service itself
 * (a direct call); in split mode an HTTP client implements the same interface, so callers do not
 * change. Every argument and result is plain, JSON-serialisable data. Refusals on the hot path
 * come back as values (`ReserveOutcome`), not exceptions; what inventory keeps in memory to answer
 * faster (sold-out hints, reserve lanes) stays behind `reserve`.
 */
import type { AuditAllocationState, AuditAllocationsPage, AuditFigures, AuditPage } from '../audit/audit.types.js';
import type { PendingHold, RecordedHold } from './pending-holds.js';
import type { ConfirmOutcome, ReleasedAllocation } from './stock-strategy.js';
import type {
  Allocation,
  NewProduct,
  OutsideHold,
  Product,
  ProductChange,
  ProductStats,
  ReserveOutcome,
  ReserveRequest,
  StockEventsPage,
} from './inventory.types.js';

export interface InventoryClient {
  createProduct(input: NewProduct): Promise<Product>;
  /** Throws `PRODUCT_NOT_FOUND`. */
  getProduct(id: string): Promise<Product>;
  listProducts(): Promise<Product[]>;
  /** Throws `PRODUCT_NOT_FOUND`, `INVALID_STOCK_CHANGE`, `VALIDATION_FAILED`. */
  updateProduct(id: string, change: ProductChange): Promise<Product>;
  /** Ends the sale now: later reservations get `SALE_ENDED`; holds stay payable until they expire. */
  endSale(id: string): Promise<Product>;
  stats(id: string): Promise<ProductStats>;
  /**
   * The product's stock events numbered above `after`, oldest first, at most `limit` of them
   * (none for a product whose strategy keeps no stock stream). Throws `PRODUCT_NOT_FOUND`.
   */
  events(productId: string, page: { readonly after: number; readonly limit: number }): Promise<StockEventsPage>;
  /**
   * Takes `quantity` units for the buyer under the order id, or says why not. Idempotent by the
   * id: asking again returns the same allocation.
   */
  reserve(request: ReserveRequest): Promise<ReserveOutcome>;
  /** Cancels a hold at once; `null` when it was not held. */
  release(allocationId: string): Promise<ReleasedAllocation | null>;
  /** Expires a hold if its expiry passed by the store's clock; `null` when it did not. */
  expire(allocationId: string): Promise<ReleasedAllocation | null>;
  confirm(allocationId: string): Promise<ConfirmOutcome>;
  /** The allocation made under this id (the order id), or `null`: orders reconciles with it. */
  allocation(allocationId: string): Promise<Allocation | null>;
  /**
   * Whether a strategy that grants outside the database holds this id for this buyer, before the
   * order pipeline has written it (see `OutsideHold`): a payment of an order not in orders'
   * database waits for the pipeline only when it does.
   */
  outsideHold(buyerId: string, allocationId: string): Promise<OutsideHold>;
  /** A product's stock, units by state and buyers over its limit, read at one instant (for the audit). Throws `PRODUCT_NOT_FOUND`. */
  auditFigures(productId: string): Promise<AuditFigures>;
  /** A page of the product's held and paid allocations, by id, with those the gate does not count (for the audit). */
  auditAllocations(productId: string, page: AuditPage): Promise<AuditAllocationsPage>;
  /** The states of these allocations of the product; an id with no allocation is left out (for the audit). */
  auditAllocationStates(productId: string, ids: readonly string[]): Promise<AuditAllocationState[]>;
  /**
   * The order pipeline writes holds a strategy granted outside the database (redis-lua); returns
   * each id's row as it now is (voided: the reconciler got there first, record no order).
   */
  recordHolds(holds: readonly PendingHold[]): Promise<RecordedHold[]>;
  /**
   * Gives back a pending hold that never reached the pipeline (its publish was refused); only for
   * an order id no other request can know (one minted, not one derived from a key).
   */
  withdraw(hold: { readonly id: string; readonly productId: string }): Promise<ReleasedAllocation | null>;
  /**
   * Gives up pending holds whose orders will never be recorded: voids each id in the database (as
   * the reconciler does: a late message for it then records nothing), then gives its units back
   * in the strategy that granted it. Only a strategy that grants outside the database (redis-lua)
   * has such holds; another product's are only voided where no row has the id.
   */
  abandonHolds(holds: readonly PendingHold[]): Promise<void>;
}
