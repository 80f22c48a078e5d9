/** The facts the audit reads from each module, and what it reports. */
import type { AllocationStatus } from '../inventory/inventory.types.js';

/** Units of a product by the state of their allocations. */
export interface AuditUnits {
  readonly held: number;
  readonly paid: number;
  readonly expired: number;
  readonly cancelled: number;
}

/**
 * A product's figures, read in one statement (so at one instant): its stock, its units by state
 * and the buyers over its limit, counted by PostgreSQL rather than read out row by row.
 */
export interface AuditFigures {
  readonly productId: string;
  /** When the figures were read, by the inventory database's clock (ISO 8601). */
  readonly takenAt: string;
  readonly stocked: number;
  readonly remaining: number;
  readonly perBuyerLimit: number | null;
  readonly units: AuditUnits;
  /** Buyers who hold or have paid for more than the limit, with their units (at most 1,000 of them). */
  readonly buyersOverLimit: readonly { readonly buyerId: string; readonly units: number }[];
  /**
   * The units as a strategy that decides outside PostgreSQL counts them (the Redis gate), read
   * after the figures; absent for the others. Once the pipeline has drained they must agree.
   */
  readonly gate?: {
    readonly remaining: number;
    /** Units ever stocked, as the gate counts them (PostgreSQL's `stock` is the truth). */
    readonly stocked: number;
    readonly held: number;
    readonly paid: number;
  };
}

/** One page of a product's held or paid allocations, in the order of their ids. */
export interface AuditAllocationsPage {
  readonly allocations: readonly {
    readonly id: string;
    readonly quantity: number;
    readonly status: 'held' | 'paid';
    /** Still inside its hold window by the store's clock (its order may not be recorded yet). */
    readonly insideHold: boolean;
  }[];
  /** Of this page, the allocations the gate does not count (each a unit it may sell again); empty without a gate. */
  readonly uncounted: readonly string[];
  /** The next page's `after`; `null` on the last page. */
  readonly nextAfter: string | null;
}

/** An allocation's state, as the audit of an order asks it. */
export interface AuditAllocationState {
  readonly id: string;
  readonly status: AllocationStatus;
}

export interface AuditOrder {
  readonly id: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly status: AllocationStatus;
  /** What the buyer pays for it (the audit's money check). */
  readonly amountCents: number;
  /** When the order was recorded or last changed (ISO 8601): after the inventory figures, its units may be newer than them. */
  readonly changedAt: string;
}

/** One page of a product's orders, oldest first. */
export interface AuditOrdersPage {
  readonly orders: readonly AuditOrder[];
  /** The next page's `after`; `null` on the last page. */
  readonly nextAfter: string | null;
}

/** A page of an audit's reads: after this id (`null`: from the first), at most `limit` rows. */
export interface AuditPage {
  readonly after: string | null;
  readonly limit: number;
}

export type ViolationKind =
  | 'OVERSOLD'
  | 'STOCK_MISMATCH'
  | 'NEGATIVE_REMAINING'
  | 'BUYER_OVER_LIMIT'
  | 'ALLOCATION_WITHOUT_ORDER'
  | 'ORDER_WITHOUT_ALLOCATION'
  | 'PAID_WITHOUT_SALE'
  | 'GATE_MISMATCH'
  | 'GATE_DRIFT'
  | 'PAID_NOT_DEBITED'
  | 'DEBITED_NOT_PAID'
  | 'REFUND_UNMATCHED';

/** What the users ledger holds for one order (`UsersClient.ledgerOf`). */
export interface AuditLedger {
  readonly orderId: string;
  readonly debitedCents: number;
  readonly refundedCents: number;
}

export interface Violation {
  readonly productId: string;
  readonly kind: ViolationKind;
  readonly detail: string;
  /** The numbers behind the finding (units oversold, buyer and units, order id, …). */
  readonly facts: Readonly<Record<string, string | number>>;
}

export interface ProductAudit {
  readonly productId: string;
  readonly stocked: number;
  readonly held: number;
  readonly paid: number;
  readonly remaining: number;
  readonly expired: number;
  readonly cancelled: number;
  readonly orders: number;
  /** Units held or paid beyond the stock (0 when correct). */
  readonly oversold: number;
}

export interface AuditReport {
  readonly ok: boolean;
  readonly products: readonly ProductAudit[];
  readonly violations: readonly Violation[];
}
