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
 *   held or paid (`GATE_DRIFT` names each one it does not);
 * - money, from the users ledger: a paid order was debited its amount and not refunded
 *   (`PAID_NOT_DEBITED`); an expired or cancelled order keeps no debit (`DEBITED_NOT_PAID`: a
 *   refund owed while users was down is one until it is made); a refund gives back exactly the
 *   order's debit (`REFUND_UNMATCHED`). A held order is left alone: its payment may be under way.
 *
 * @remarks However large the product, each step holds one page: the figures (stock, units by
 * state, buyers over the limit) are counted by PostgreSQL in one statement, so at one instant;
 * then the held and paid allocations are read `AUDIT_PAGE` at a time, each page with the orders it
 * should have; then the orders the same way, each page with its allocations. An order is recorded
 * after its units and an allocation is never deleted, so an order's allocation, read after the
 * order, is there; an order changed after the figures were read is left to the next audit, as a
 * hold still inside its window may be waiting for its order.
 */
import type {
  AuditAllocationState,
  AuditAllocationsPage,
  AuditFigures,
  AuditLedger,
  AuditOrder,
  AuditOrdersPage,
  AuditPage,
  AuditReport,
  ProductAudit,
  Violation,
} from './audit.types.js';

/** Rows an audit reads per step (and order ids it asks the other module about at once). */
export const AUDIT_PAGE = 1_000;

/** What the audit reads, from inventory and from orders (their clients' audit calls). */
export interface AuditSources {
  figures(productId: string): Promise<AuditFigures>;
  allocations(productId: string, page: AuditPage): Promise<AuditAllocationsPage>;
  allocationStates(productId: string, ids: readonly string[]): Promise<readonly AuditAllocationState[]>;
  orders(productId: string, page: AuditPage): Promise<AuditOrdersPage>;
  /** Which of `ids` have no order. */
  missingOrders(ids: readonly string[]): Promise<readonly string[]>;
  /** The ledger of each of these orders that has a debit or a refund (users). */
  ledger(orderIds: readonly string[]): Promise<readonly AuditLedger[]>;
}

export async function auditProducts(sources: AuditSources, productIds: readonly string[], pageSize = AUDIT_PAGE): Promise<AuditReport> {
  const products: ProductAudit[] = [];
  const violations: Violation[] = [];
  for (const productId of productIds) {
    const result = await auditProduct(sources, productId, pageSize);
    products.push(result.product);
    violations.push(...result.violations);
  }
  return { ok: violations.length === 0, products, violations };
}

/** One product's audit, a page at a time; its violations in the order the checks are listed above. */
export async function auditProduct(
  sources: AuditSources,
  productId: string,
  pageSize = AUDIT_PAGE,
): Promise<{ product: ProductAudit; violations: Violation[] }> {
  // Inventory first, then orders: an order is recorded after its units.
  const figures = await sources.figures(productId);
  const found = new Findings(productId);
  found.figures(figures);

  const uncounted: string[] = [];
  for (let after: string | null = null; ; ) {
    const page: AuditAllocationsPage = await sources.allocations(productId, { after, limit: pageSize });
    const missing = new Set(await sources.missingOrders(page.allocations.map((allocation) => allocation.id)));
    for (const allocation of page.allocations) {
      if (!missing.has(allocation.id) || (allocation.status === 'held' && allocation.insideHold)) continue;
      found.add('ALLOCATION_WITHOUT_ORDER', `allocation ${allocation.id} is ${allocation.status} but has no order`, {
        allocationId: allocation.id,
        quantity: allocation.quantity,
      });
    }
    uncounted.push(...page.uncounted);
    if (page.nextAfter === null) break;
    after = page.nextAfter;
  }

  const takenAt = Date.parse(figures.takenAt);
  let orders = 0;
  for (let after: string | null = null; ; ) {
    const page: AuditOrdersPage = await sources.orders(productId, { after, limit: pageSize });
    orders += page.orders.length;
    // Recorded or paid after the figures: its units (or their sale) may be newer than them.
    const live = page.orders.filter((order) => (order.status === 'held' || order.status === 'paid') && Date.parse(order.changedAt) < takenAt);
    const states = await sources.allocationStates(productId, live.map((order) => order.id));
    found.orders(live, new Map(states.map((state) => [state.id, state.status])));
    const settled = page.orders.filter((order) => order.status !== 'held');
    const ledger = await sources.ledger(settled.map((order) => order.id));
    found.money(settled, new Map(ledger.map((entry) => [entry.orderId, entry])));
    if (page.nextAfter === null) break;
    after = page.nextAfter;
  }

  found.gate(figures, uncounted);
  const { stocked, remaining, units } = figures;
  const oversold = Math.max(0, units.held + units.paid - stocked);
  return { product: { productId, stocked, remaining, ...units, orders, oversold }, violations: found.violations };
}

/** The violations of one product, as the checks find them. */
class Findings {
  readonly violations: Violation[] = [];

  constructor(private readonly productId: string) {}

  add(kind: Violation['kind'], detail: string, facts: Violation['facts']): void {
    this.violations.push({ productId: this.productId, kind, detail, facts });
  }

  /** The checks on the figures alone: the stock adds up, nothing oversold, no buyer over the limit. */
  figures({ stocked, remaining, units, perBuyerLimit, buyersOverLimit }: AuditFigures): void {
    const allocated = units.held + units.paid;
    const oversold = Math.max(0, allocated - stocked);
    if (oversold > 0) {
      this.add('OVERSOLD', `${allocated} units held or paid but only ${stocked} stocked`, { oversold, allocated, stocked });
    }
    if (remaining < 0) this.add('NEGATIVE_REMAINING', `remaining is ${remaining}`, { remaining });
    if (stocked !== allocated + remaining) {
      this.add('STOCK_MISMATCH', `stocked ${stocked} ≠ held ${units.held} + paid ${units.paid} + remaining ${remaining}`, {
        stocked,
        held: units.held,
        paid: units.paid,
        remaining,
        difference: stocked - allocated - remaining,
      });
    }
    if (perBuyerLimit === null) return;
    for (const { buyerId, units: count } of buyersOverLimit) {
      this.add('BUYER_OVER_LIMIT', `buyer ${buyerId} has ${count} units, limit ${perBuyerLimit}`, { buyerId, units: count, limit: perBuyerLimit });
    }
  }

  /** Held and paid orders (older than the figures) against their allocations' states. */
  orders(orders: readonly AuditOrder[], allocations: ReadonlyMap<string, AuditAllocationState['status']>): void {
    for (const order of orders) {
      const allocation = allocations.get(order.id);
      if (allocation === undefined) {
        this.add('ORDER_WITHOUT_ALLOCATION', `order ${order.id} is ${order.status} but no units were allocated for it`, {
          orderId: order.id,
          quantity: order.quantity,
        });
      }
      if (order.status === 'paid' && allocation !== undefined && allocation !== 'paid') {
        this.add('PAID_WITHOUT_SALE', `order ${order.id} is paid but its allocation is ${allocation}`, { orderId: order.id });
      }
    }
  }

  /** Paid, expired and cancelled orders against what the ledger took and gave back for them. */
  money(orders: readonly AuditOrder[], ledger: ReadonlyMap<string, AuditLedger>): void {
    for (const order of orders) {
      const { debitedCents = 0, refundedCents = 0 } = ledger.get(order.id) ?? {};
      const facts = { orderId: order.id, amountCents: order.amountCents, debitedCents, refundedCents };
      if (order.status === 'paid' && order.amountCents > 0 && (debitedCents !== order.amountCents || refundedCents > 0)) {
        this.add('PAID_NOT_DEBITED', `order ${order.id} is paid (${order.amountCents} cents) but the ledger debited ${debitedCents} and refunded ${refundedCents}`, facts);
      }
      if (order.status !== 'paid' && debitedCents > refundedCents) {
        this.add('DEBITED_NOT_PAID', `order ${order.id} is ${order.status} but ${debitedCents - refundedCents} cents of its debit were not refunded`, facts);
      }
      if (refundedCents > 0 && refundedCents !== debitedCents) {
        this.add('REFUND_UNMATCHED', `order ${order.id} was refunded ${refundedCents} cents against a debit of ${debitedCents}`, facts);
      }
    }
  }

  /** The gate's counts against PostgreSQL's, and the holds it does not count. */
  gate({ gate, stocked, remaining, units }: AuditFigures, uncounted: readonly string[]): void {
    if (gate && (gate.remaining !== remaining || gate.held !== units.held || gate.paid !== units.paid || gate.stocked !== stocked)) {
      this.add('GATE_MISMATCH', `the gate counts stocked ${gate.stocked}, remaining ${gate.remaining}, held ${gate.held}, paid ${gate.paid}; PostgreSQL ${stocked}, ${remaining}, ${units.held}, ${units.paid}`, {
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
    for (const allocationId of uncounted) {
      this.add('GATE_DRIFT', `allocation ${allocationId} is held or paid in PostgreSQL but the gate does not count it: the gate may sell its units again`, {
        allocationId,
      });
    }
  }
}
