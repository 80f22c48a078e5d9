import { describe, expect, it } from 'vitest';
import { auditProduct as auditByPages, type AuditSources } from '../src/audit/audit.js';
import type { AuditLedger, AuditOrder, AuditUnits } from '../src/audit/audit.types.js';
import type { AllocationStatus } from '../src/inventory/inventory.types.js';

interface Allocation {
  readonly id: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly status: AllocationStatus;
  readonly insideHold: boolean;
}

const allocation = (id: string, buyerId: string, quantity: number, status: Allocation['status'], insideHold = true): Allocation => ({
  id,
  buyerId,
  quantity,
  status,
  insideHold,
});
/** Orders are recorded before the figures are read unless a test says otherwise. */
const TAKEN_AT = '2026-01-01T00:00:10.000Z';
const order = (
  id: string,
  buyerId: string,
  quantity: number,
  status: AuditOrder['status'],
  changedAt = '2026-01-01T00:00:00.000Z',
  amountCents = 0,
): AuditOrder => ({
  id,
  buyerId,
  quantity,
  amountCents,
  status,
  changedAt,
});

interface Snapshot {
  readonly stocked: number;
  readonly remaining: number;
  readonly perBuyerLimit: number | null;
  readonly allocations: readonly Allocation[];
}

const snapshot = (stocked: number, remaining: number, allocations: Allocation[], perBuyerLimit: number | null = null): Snapshot => ({
  stocked,
  remaining,
  perBuyerLimit,
  allocations,
});

const live = (a: Allocation): boolean => a.status === 'held' || a.status === 'paid';

/** Rows after `after` in id order, `limit` of them, and the next page's cursor. */
function page<T extends { id: string }>(rows: readonly T[], after: string | null, limit: number): { rows: T[]; nextAfter: string | null } {
  const sorted = [...rows].sort((a, b) => a.id.localeCompare(b.id)).filter((row) => after === null || row.id > after);
  const shown = sorted.slice(0, limit);
  return { rows: shown, nextAfter: sorted.length > limit ? shown.at(-1)?.id ?? null : null };
}

/** The audit's sources over rows in memory, answering as the stores' audit calls do (one row a page: every step pages). */
function sourcesOf(product: Snapshot, orders: readonly AuditOrder[], ledger: readonly AuditLedger[] = []): AuditSources {
  return {
    figures: async (productId) => {
      const units: Record<keyof AuditUnits, number> = { held: 0, paid: 0, expired: 0, cancelled: 0 };
      const perBuyer = new Map<string, number>();
      for (const a of product.allocations) {
        units[a.status] += a.quantity;
        if (live(a)) perBuyer.set(a.buyerId, (perBuyer.get(a.buyerId) ?? 0) + a.quantity);
      }
      const limit = product.perBuyerLimit;
      return {
        productId,
        takenAt: TAKEN_AT,
        stocked: product.stocked,
        remaining: product.remaining,
        perBuyerLimit: limit,
        units,
        buyersOverLimit: [...perBuyer].filter(([, n]) => limit !== null && n > limit).map(([buyerId, n]) => ({ buyerId, units: n })),
      };
    },
    allocations: async (_productId, { after, limit }) => {
      const { rows, nextAfter } = page(product.allocations.filter(live), after, limit);
      return {
        allocations: rows.map((a) => ({ id: a.id, quantity: a.quantity, status: a.status as 'held' | 'paid', insideHold: a.insideHold })),
        uncounted: [],
        nextAfter,
      };
    },
    allocationStates: async (_productId, ids) => product.allocations.filter((a) => ids.includes(a.id)).map((a) => ({ id: a.id, status: a.status })),
    orders: async (_productId, { after, limit }) => {
      const { rows, nextAfter } = page(orders, after, limit);
      return { orders: rows, nextAfter };
    },
    missingOrders: async (ids) => ids.filter((id) => !orders.some((o) => o.id === id)),
    ledger: async (ids) => ledger.filter((entry) => ids.includes(entry.orderId)),
  };
}

const auditProduct = (product: Snapshot, orders: readonly AuditOrder[], ledger: readonly AuditLedger[] = []) =>
  auditByPages(sourcesOf(product, orders, ledger), 'p', 1);

describe("the audit's money check", () => {
  const PRICE = 500;
  const money = (orderId: string, debitedCents: number, refundedCents: number): AuditLedger => ({ orderId, debitedCents, refundedCents });
  const stock = snapshot(5, 2, [allocation('a', 'x', 1, 'paid'), allocation('b', 'y', 1, 'expired'), allocation('c', 'z', 1, 'held'), allocation('d', 'w', 1, 'cancelled'), allocation('e', 'v', 1, 'paid')]);
  const orders = [
    order('a', 'x', 1, 'paid', undefined, PRICE),
    order('b', 'y', 1, 'expired', undefined, PRICE),
    order('c', 'z', 1, 'held', undefined, PRICE),
    order('d', 'w', 1, 'cancelled', undefined, PRICE),
    order('e', 'v', 1, 'paid', undefined, 0),
  ];

  it('passes paid orders debited once, ended ones refunded or never debited, a held one mid-payment, and a free order', async () => {
    const result = await auditProduct(stock, orders, [money('a', PRICE, 0), money('b', PRICE, PRICE), money('c', PRICE, 0)]);
    expect(result.violations).toEqual([]);
  });

  it('names a paid order not debited, or debited and refunded', async () => {
    const result = await auditProduct(stock, orders, [money('b', 0, 0)]);
    expect(result.violations.map((v) => [v.kind, v.facts['orderId']])).toEqual([['PAID_NOT_DEBITED', 'a']]);
    const refunded = await auditProduct(stock, orders, [money('a', PRICE, PRICE)]);
    expect(refunded.violations.map((v) => [v.kind, v.facts['orderId']])).toEqual([['PAID_NOT_DEBITED', 'a']]);
  });

  it('names an expired or cancelled order whose debit was kept', async () => {
    const result = await auditProduct(stock, orders, [money('a', PRICE, 0), money('b', PRICE, 0), money('d', PRICE, 0)]);
    expect(result.violations.map((v) => [v.kind, v.facts['orderId']])).toEqual([
      ['DEBITED_NOT_PAID', 'b'],
      ['DEBITED_NOT_PAID', 'd'],
    ]);
  });

  it('names a refund that does not give back exactly the debit', async () => {
    const result = await auditProduct(stock, orders, [money('a', PRICE, 0), money('b', 0, PRICE), money('d', PRICE, 2 * PRICE)]);
    expect(result.violations.map((v) => [v.kind, v.facts['orderId']])).toEqual([
      ['REFUND_UNMATCHED', 'b'],
      ['REFUND_UNMATCHED', 'd'],
    ]);
  });
});

describe('the audit', () => {
  it('passes a consistent product', async () => {
    const result = await auditProduct(
      snapshot(3, 1, [allocation('a', 'x', 1, 'held'), allocation('b', 'y', 1, 'paid'), allocation('c', 'z', 2, 'expired')]),
      [order('a', 'x', 1, 'held'), order('b', 'y', 1, 'paid'), order('c', 'z', 2, 'expired')],
    );
    expect(result.violations).toEqual([]);
    expect(result.product).toMatchObject({ stocked: 3, held: 1, paid: 1, remaining: 1, expired: 2, oversold: 0 });
  });

  it('reports an oversell with the units', async () => {
    const result = await auditProduct(snapshot(1, 0, [allocation('a', 'x', 1, 'held'), allocation('b', 'y', 1, 'held')]), [
      order('a', 'x', 1, 'held'),
      order('b', 'y', 1, 'held'),
    ]);
    expect(result.product.oversold).toBe(1);
    expect(result.violations.map((v) => v.kind)).toEqual(['OVERSOLD', 'STOCK_MISMATCH']);
    expect(result.violations[0]?.facts).toMatchObject({ oversold: 1, allocated: 2, stocked: 1 });
  });

  it('reports a lost update that left the counter too high', async () => {
    const result = await auditProduct(snapshot(5, 4, [allocation('a', 'x', 1, 'held'), allocation('b', 'y', 1, 'held')]), [
      order('a', 'x', 1, 'held'),
      order('b', 'y', 1, 'held'),
    ]);
    expect(result.violations.map((v) => v.kind)).toEqual(['STOCK_MISMATCH']);
    expect(result.violations[0]?.facts).toMatchObject({ difference: -1 });
  });

  it('reports a buyer over the limit', async () => {
    const result = await auditProduct(snapshot(5, 2, [allocation('a', 'x', 2, 'held'), allocation('b', 'x', 1, 'paid')], 2), [
      order('a', 'x', 2, 'held'),
      order('b', 'x', 1, 'paid'),
    ]);
    expect(result.violations.map((v) => v.kind)).toEqual(['BUYER_OVER_LIMIT']);
  });

  it('allows a fresh hold without its order yet, but not an expired one or a paid one', async () => {
    const fresh = await auditProduct(snapshot(2, 1, [allocation('a', 'x', 1, 'held', true)]), []);
    expect(fresh.violations).toEqual([]);
    const stale = await auditProduct(snapshot(3, 1, [allocation('a', 'x', 1, 'held', false), allocation('b', 'y', 1, 'paid')]), []);
    expect(stale.violations.map((v) => v.kind)).toEqual(['ALLOCATION_WITHOUT_ORDER', 'ALLOCATION_WITHOUT_ORDER']);
  });

  it('reports an order the buyer was told about but that has no units', async () => {
    const result = await auditProduct(snapshot(2, 2, []), [order('a', 'x', 1, 'held')]);
    expect(result.violations.map((v) => v.kind)).toEqual(['ORDER_WITHOUT_ALLOCATION']);
  });

  it('reports a paid order whose units are not sold', async () => {
    const result = await auditProduct(snapshot(2, 2, [allocation('a', 'x', 1, 'expired')]), [order('a', 'x', 1, 'paid')]);
    expect(result.violations.map((v) => v.kind)).toEqual(['PAID_WITHOUT_SALE']);
  });

  it('leaves to the next audit an order recorded or paid after the inventory snapshot, and checks it once it is older', async () => {
    const afterwards = '2026-01-01T00:00:20.000Z';
    // Reserved and recorded after the snapshot; paid after the snapshot that saw its unit held.
    const newer = await auditProduct(snapshot(3, 2, [allocation('b', 'y', 1, 'held', true)]), [
      order('a', 'x', 1, 'held', afterwards),
      order('b', 'y', 1, 'paid', afterwards),
    ]);
    expect(newer.violations).toEqual([]);
    const older = await auditProduct(snapshot(3, 2, [allocation('b', 'y', 1, 'held', true)]), [order('a', 'x', 1, 'held'), order('b', 'y', 1, 'paid')]);
    expect(older.violations.map((v) => v.kind)).toEqual(['ORDER_WITHOUT_ALLOCATION', 'PAID_WITHOUT_SALE']);
  });
});
