/** The inventory module's data, as its clients see it. */
import type { StrategyName } from './strategy-names.js';

export interface Product {
  readonly id: string;
  readonly name: string;
  readonly priceCents: number;
  /** Units ever stocked. */
  readonly stock: number;
  /** Units free to buy now. */
  readonly remaining: number;
  /** `null`: unlimited. */
  readonly perBuyerLimit: number | null;
  readonly holdSeconds: number;
  readonly opensAt: string;
  readonly closesAt: string | null;
  readonly endedAt: string | null;
  readonly strategy: StrategyName;
  readonly createdAt: string;
}

export interface NewProduct {
  readonly name: string;
  readonly priceCents: number;
  readonly stock: number;
  readonly perBuyerLimit?: number | null;
  readonly holdSeconds?: number;
  readonly opensAt?: string;
  readonly closesAt?: string | null;
  readonly strategy?: StrategyName;
}

export interface ProductChange {
  /** Units to add (negative removes unallocated units; never below what is allocated). */
  readonly addStock?: number;
  readonly name?: string;
  readonly priceCents?: number;
  readonly perBuyerLimit?: number | null;
  readonly holdSeconds?: number;
  readonly opensAt?: string;
  readonly closesAt?: string | null;
}

/** Units by state, counted from the allocations (the truth), not from counters. */
export interface ProductStats {
  readonly stocked: number;
  readonly held: number;
  readonly paid: number;
  readonly remaining: number;
  readonly expired: number;
  readonly cancelled: number;
}

export type AllocationStatus = 'held' | 'paid' | 'expired' | 'cancelled';

export interface Allocation {
  /** The order id. */
  readonly id: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly amountCents: number;
  readonly status: AllocationStatus;
  readonly expiresAt: string;
}

export interface ReserveRequest {
  /** The order id, minted by orders before it asks: the key that makes the step idempotent. */
  readonly allocationId: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
}

/** Why a reservation was refused. Every strategy names one; never an opaque "0 rows". */
export type ReserveRefusal =
  | { readonly ok: false; readonly reason: 'SOLD_OUT'; readonly remaining: number }
  | { readonly ok: false; readonly reason: 'PRODUCT_NOT_FOUND' }
  | { readonly ok: false; readonly reason: 'SALE_NOT_OPEN'; readonly opensAt: string }
  | { readonly ok: false; readonly reason: 'SALE_ENDED' }
  | { readonly ok: false; readonly reason: 'LIMIT_EXCEEDED'; readonly limit: number }
  | { readonly ok: false; readonly reason: 'CONTENTION'; readonly retryAfterSeconds: number };

export type ReserveOutcome =
  | {
      readonly ok: true;
      readonly allocation: Allocation;
      /** Units left just after this one, when the strategy saw it under its guard (a hint: others may sell meanwhile). */
      readonly remaining?: number;
    }
  | ReserveRefusal;
