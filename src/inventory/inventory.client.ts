/**
 * What the other modules may ask of inventory. In one process the client is the service itself
 * (a direct call); in split mode an HTTP client implements the same interface, so callers do not
 * change. Refusals on the hot path come back as values (`ReserveOutcome`), not exceptions.
 */
import type { AuditSnapshot } from '../audit/audit.types.js';
import type { ConfirmOutcome, ReleasedAllocation } from './stock-strategy.js';
import type {
  Allocation,
  NewProduct,
  Product,
  ProductChange,
  ProductStats,
  ReserveOutcome,
  ReserveRefusal,
  ReserveRequest,
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
  reserve(request: ReserveRequest): Promise<ReserveOutcome>;
  /**
   * The refusal `reserve` would give this product without asking the store (it answered "sold
   * out" a moment ago), or `undefined`: ask `reserve`. Lets a caller answer at once and store that
   * answer in the one statement it must write anyway. A client in another process may always
   * answer `undefined`.
   */
  refusalFromMemory(productId: string): ReserveRefusal | undefined;
  /** Cancels a hold at once; `null` when it was not held. */
  release(allocationId: string): Promise<ReleasedAllocation | null>;
  /** Expires a hold if its expiry passed by the store's clock; `null` when it did not. */
  expire(allocationId: string): Promise<ReleasedAllocation | null>;
  confirm(allocationId: string): Promise<ConfirmOutcome>;
  /** The allocation made under this id (the order id), or `null`: orders reconciles with it. */
  allocation(allocationId: string): Promise<Allocation | null>;
  /** Everything the audit needs to know about one product's stock. */
  auditSnapshot(productId: string): Promise<AuditSnapshot>;
}
