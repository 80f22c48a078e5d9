import { describe, expect, it } from 'vitest';
import { auditProduct } from '../src/audit/audit.js';
import type { AuditOrder, AuditSnapshot } from '../src/audit/audit.types.js';

type Allocation = AuditSnapshot['allocations'][number];

const allocation = (id: string, buyerId: string, quantity: number, status: Allocation['status'], insideHold = true): Allocation => ({
  id,
  buyerId,
  quantity,
  status,
  insideHold,
});
/** Orders are recorded before the snapshot unless a test says otherwise. */
const TAKEN_AT = '2026-01-01T00:00:10.000Z';
const order = (id: string, buyerId: string, quantity: number, status: AuditOrder['status'], changedAt = '2026-01-01T00:00:00.000Z'): AuditOrder => ({
  id,
  buyerId,
  quantity,
  status,
  changedAt,
});

const snapshot = (stocked: number, remaining: number, allocations: Allocation[], perBuyerLimit: number | null = null): AuditSnapshot => ({
  productId: 'p',
  takenAt: TAKEN_AT,
  stocked,
  remaining,
  perBuyerLimit,
  allocations,
});

describe('the audit', () => {
  it('passes a consistent product', () => {
    const result = auditProduct(
      snapshot(3, 1, [allocation('a', 'x', 1, 'held'), allocation('b', 'y', 1, 'paid'), allocation('c', 'z', 2, 'expired')]),
      [order('a', 'x', 1, 'held'), order('b', 'y', 1, 'paid'), order('c', 'z', 2, 'expired')],
    );
    expect(result.violations).toEqual([]);
    expect(result.product).toMatchObject({ stocked: 3, held: 1, paid: 1, remaining: 1, expired: 2, oversold: 0 });
  });

  it('reports an oversell with the units', () => {
    const result = auditProduct(snapshot(1, 0, [allocation('a', 'x', 1, 'held'), allocation('b', 'y', 1, 'held')]), [
      order('a', 'x', 1, 'held'),
      order('b', 'y', 1, 'held'),
    ]);
    expect(result.product.oversold).toBe(1);
    expect(result.violations.map((v) => v.kind)).toEqual(['OVERSOLD', 'STOCK_MISMATCH']);
    expect(result.violations[0]?.facts).toMatchObject({ oversold: 1, allocated: 2, stocked: 1 });
  });

  it('reports a lost update that left the counter too high', () => {
    const result = auditProduct(snapshot(5, 4, [allocation('a', 'x', 1, 'held'), allocation('b', 'y', 1, 'held')]), [
      order('a', 'x', 1, 'held'),
      order('b', 'y', 1, 'held'),
    ]);
    expect(result.violations.map((v) => v.kind)).toEqual(['STOCK_MISMATCH']);
    expect(result.violations[0]?.facts).toMatchObject({ difference: -1 });
  });

  it('reports a buyer over the limit', () => {
    const result = auditProduct(snapshot(5, 2, [allocation('a', 'x', 2, 'held'), allocation('b', 'x', 1, 'paid')], 2), [
      order('a', 'x', 2, 'held'),
      order('b', 'x', 1, 'paid'),
    ]);
    expect(result.violations.map((v) => v.kind)).toEqual(['BUYER_OVER_LIMIT']);
  });

  it('allows a fresh hold without its order yet, but not an expired one or a paid one', () => {
    const fresh = auditProduct(snapshot(2, 1, [allocation('a', 'x', 1, 'held', true)]), []);
    expect(fresh.violations).toEqual([]);
    const stale = auditProduct(snapshot(3, 1, [allocation('a', 'x', 1, 'held', false), allocation('b', 'y', 1, 'paid')]), []);
    expect(stale.violations.map((v) => v.kind)).toEqual(['ALLOCATION_WITHOUT_ORDER', 'ALLOCATION_WITHOUT_ORDER']);
  });

  it('reports an order the buyer was told about but that has no units', () => {
    const result = auditProduct(snapshot(2, 2, []), [order('a', 'x', 1, 'held')]);
    expect(result.violations.map((v) => v.kind)).toEqual(['ORDER_WITHOUT_ALLOCATION']);
  });

  it('reports a paid order whose units are not sold', () => {
    const result = auditProduct(snapshot(2, 2, [allocation('a', 'x', 1, 'expired')]), [order('a', 'x', 1, 'paid')]);
    expect(result.violations.map((v) => v.kind)).toEqual(['PAID_WITHOUT_SALE']);
  });

  it('leaves to the next audit an order recorded or paid after the inventory snapshot, and checks it once it is older', () => {
    const afterwards = '2026-01-01T00:00:20.000Z';
    // Reserved and recorded after the snapshot; paid after the snapshot that saw its unit held.
    const newer = auditProduct(snapshot(3, 2, [allocation('b', 'y', 1, 'held', true)]), [
      order('a', 'x', 1, 'held', afterwards),
      order('b', 'y', 1, 'paid', afterwards),
    ]);
    expect(newer.violations).toEqual([]);
    const older = auditProduct(snapshot(3, 2, [allocation('b', 'y', 1, 'held', true)]), [order('a', 'x', 1, 'held'), order('b', 'y', 1, 'paid')]);
    expect(older.violations.map((v) => v.kind)).toEqual(['ORDER_WITHOUT_ALLOCATION', 'PAID_WITHOUT_SALE']);
  });
});
