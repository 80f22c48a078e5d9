/** The facts the audit reads from each module, and what it reports. */
import type { AllocationStatus } from '../inventory/inventory.types.js';

export interface AuditSnapshot {
  readonly productId: string;
  /** When the snapshot was taken, by the inventory database's clock (ISO 8601). */
  readonly takenAt: string;
  readonly stocked: number;
  readonly remaining: number;
  readonly perBuyerLimit: number | null;
  readonly allocations: readonly {
    readonly id: string;
    readonly buyerId: string;
    readonly quantity: number;
    readonly status: AllocationStatus;
    /** Still inside its hold window by the store's clock (its order may not be recorded yet). */
    readonly insideHold: boolean;
  }[];
  /**
   * The units as a strategy that decides outside PostgreSQL counts them (the Redis gate), read
   * after the snapshot; absent for the others. Once the pipeline has drained they must agree.
   */
  readonly gate?: {
    readonly remaining: number;
    /** Units ever stocked, as the gate counts them (PostgreSQL's `stock` is the truth). */
    readonly stocked: number;
    readonly held: number;
    readonly paid: number;
    /** Allocations held or paid in PostgreSQL that the gate does not count (each a unit it may sell again). */
    readonly uncounted: readonly string[];
  };
}

export interface AuditOrder {
  readonly id: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly status: AllocationStatus;
  /** When the order was recorded or last changed (ISO 8601): after the inventory snapshot, its units may be newer than it. */
  readonly changedAt: string;
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
  | 'GATE_DRIFT';

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
