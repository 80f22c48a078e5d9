/**
 * The audit: after any storm, checks what must hold for every product, from the stores' truth
 * (allocations and orders), not from counters. Reused by the tests, by bench and by
 * `GET /v1/admin/audit`.
 *
 * - stocked = held + paid + remaining, and remaining ≥ 0;
 * - held + paid ≤ stocked (else `OVERSOLD`, with the units);
 * - no buyer holds or has paid for more than the product's limit;
 * - every held or paid allocation has its order (a hold still inside its window may be a purchase
 *   whose order is being recorded right now), and every held or paid order has its allocation;
 * - a product sold through the Redis gate: the gate's counts equal PostgreSQL's (the audit route
 *   waits for the order pipeline to drain first), and the gate counts every hold PostgreSQL has
 *   held or paid (`GATE_DRIFT` names each one it does not).
 */
import type { AuditOrder, AuditReport, AuditSnapshot, ProductAudit, Violation } from './audit.types.js';

export interface AuditSources {
  auditSnapshot(productId: string): Promise<AuditSnapshot>;
  auditOrders(productId: string): Promise<readonly AuditOrder[]>;
}

export async function auditProducts(sources: AuditSources, productIds: readonly string[]): Promise<AuditReport> {
  const products: ProductAudit[] = [];
  const violations: Violation[] = [];
  for (const productId of productIds) {
    // Inventory first, then orders: an order is recorded after its units, so every order older
    // than the inventory snapshot has its units in it (newer ones are left to the next audit).
    const snapshot = await sources.auditSnapshot(productId);
    const orders = await sources.auditOrders(productId);
    const result = auditProduct(snapshot, orders);
    products.push(result.product);
    violations.push(...result.violations);
  }
  return { ok: violations.length === 0, products, violations };
}

/** The checks for one product, on facts already read (pure, so it is tested on its own). */
export function auditProduct(
  snapshot: AuditSnapshot,
  orders: readonly AuditOrder[],
): { product: ProductAudit; violations: Violation[] } {
  const { productId, stocked, remaining } = snapshot;
  const violations: Violation[] = [];
  const add = (kind: Violation['kind'], detail: string, facts: Violation['facts']): void => {
    violations.push({ productId, kind, detail, facts });
  };

  const units = { held: 0, paid: 0, expired: 0, cancelled: 0 };
  const perBuyer = new Map<string, number>();
  for (const allocation of snapshot.allocations) {
    units[allocation.status] += allocation.quantity;
    if (allocation.status === 'held' || allocation.status === 'paid') {
      perBuyer.set(allocation.buyerId, (perBuyer.get(allocation.buyerId) ?? 0) + allocation.quantity);
    }
  }
  const allocated = units.held + units.paid;
  const oversold = Math.max(0, allocated - stocked);

  if (oversold > 0) {
    add('OVERSOLD', `${allocated} units held or paid but only ${stocked} stocked`, { oversold, allocated, stocked });
  }
  if (remaining < 0) add('NEGATIVE_REMAINING', `remaining is ${remaining}`, { remaining });
  if (stocked !== allocated + remaining) {
    add('STOCK_MISMATCH', `stocked ${stocked} ≠ held ${units.held} + paid ${units.paid} + remaining ${remaining}`, {
      stocked,
      held: units.held,
      paid: units.paid,
      remaining,
      difference: stocked - allocated - remaining,
    });
  }
  if (snapshot.perBuyerLimit !== null) {
    for (const [buyerId, count] of perBuyer) {
      if (count > snapshot.perBuyerLimit) {
        add('BUYER_OVER_LIMIT', `buyer ${buyerId} has ${count} units, limit ${snapshot.perBuyerLimit}`, {
          buyerId,
          units: count,
          limit: snapshot.perBuyerLimit,
        });
      }
    }
  }

  const ordersById = new Map(orders.map((order) => [order.id, order]));
  const allocationsById = new Map(snapshot.allocations.map((allocation) => [allocation.id, allocation]));
  for (const allocation of snapshot.allocations) {
    const live = allocation.status === 'held' || allocation.status === 'paid';
    if (!live || ordersById.has(allocation.id)) continue;
    if (allocation.status === 'held' && allocation.insideHold) continue;
    add('ALLOCATION_WITHOUT_ORDER', `allocation ${allocation.id} is ${allocation.status} but has no order`, {
      allocationId: allocation.id,
      quantity: allocation.quantity,
    });
  }
  const takenAt = Date.parse(snapshot.takenAt);
  for (const order of orders) {
    // Recorded or paid after the inventory snapshot: its units (or their sale) may be newer than it.
    if (Date.parse(order.changedAt) >= takenAt) continue;
    const allocation = allocationsById.get(order.id);
    if ((order.status === 'held' || order.status === 'paid') && !allocation) {
      add('ORDER_WITHOUT_ALLOCATION', `order ${order.id} is ${order.status} but no units were allocated for it`, {
        orderId: order.id,
        quantity: order.quantity,
      });
    }
    if (order.status === 'paid' && allocation && allocation.status !== 'paid') {
      add('PAID_WITHOUT_SALE', `order ${order.id} is paid but its allocation is ${allocation.status}`, {
        orderId: order.id,
      });
    }
  }

  const { gate } = snapshot;
  if (gate && (gate.remaining !== remaining || gate.held !== units.held || gate.paid !== units.paid || gate.stocked !== stocked)) {
    add('GATE_MISMATCH', `the gate counts stocked ${gate.stocked}, remaining ${gate.remaining}, held ${gate.held}, paid ${gate.paid}; PostgreSQL ${stocked}, ${remaining}, ${units.held}, ${units.paid}`, {
      gateStocked: gate.stocked,
      stocked,
      gateRemaining: gate.remaining,
      gateHeld: gate.held,
      gatePaid: gate.paid,
      remaining,
      held: units.held,
      paid: units.paid,
    });
  }

  for (const allocationId of gate?.uncounted ?? []) {
    add('GATE_DRIFT', `allocation ${allocationId} is held or paid in PostgreSQL but the gate does not count it: the gate may sell its units again`, {
      allocationId,
    });
  }

  return {
    product: { productId, stocked, remaining, ...units, orders: orders.length, oversold },
    violations,
  };
}
