/**
 * The orders module: the checkout. A purchase mints the order id first, has inventory reserve
 * under it, then records the order `held`. An allocation whose order was never recorded (a crash
 * in between) simply expires back to stock: no buyer was told "yes" for it.
 */
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type { AuditOrder } from '../audit/audit.types.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { Order, OrdersClient, OrderStatus, PurchaseRequest } from './orders.client.js';
import { refusalError } from './refusals.js';

interface OrderRow {
  id: string;
  buyer_id: string;
  product_id: string;
  quantity: number;
  amount_cents: number;
  status: OrderStatus;
  expires_at: Date;
  created_at: Date;
}

export interface OrdersOptions {
  readonly sql: Sql;
  readonly inventory: InventoryClient;
  readonly newId: () => string;
  readonly log: { error(object: unknown, message: string): void };
}

export function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    status: row.status,
    buyerId: row.buyer_id,
    productId: row.product_id,
    quantity: row.quantity,
    amountCents: row.amount_cents,
    expiresAt: row.expires_at.toISOString(),
    createdAt: row.created_at.toISOString(),
  };
}

export class OrdersService implements OrdersClient {
  private readonly sql: Sql;

  constructor(private readonly options: OrdersOptions) {
    this.sql = options.sql;
  }

  async purchase(buyerId: string, request: PurchaseRequest): Promise<Order> {
    const orderId = this.options.newId();
    const outcome = await this.options.inventory.reserve({
      allocationId: orderId,
      productId: request.productId,
      buyerId,
      quantity: request.quantity,
    });
    if (!outcome.ok) throw refusalError(outcome, request.productId);
    const { allocation } = outcome;
    try {
      const [row] = await this.sql<OrderRow[]>`
        insert into orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
        values (${orderId}, ${buyerId}, ${allocation.productId}, ${allocation.quantity},
                ${allocation.amountCents}, 'held', ${allocation.expiresAt})
        returning *`;
      if (!row) throw new Error('insert returned no order');
      return toOrder(row);
    } catch (error) {
      // The buyer is told "no", so the unit must not stay held: give it back now rather than at
      // expiry. If this fails too, the sweeper returns it when the hold expires.
      await this.options.inventory.release(orderId).catch((releaseError: unknown) => {
        this.options.log.error({ err: releaseError, orderId }, 'could not release the hold of an unrecorded order');
      });
      throw error;
    }
  }

  async getOrder(buyerId: string, orderId: string): Promise<Order> {
    const [row] = await this.sql<OrderRow[]>`select * from orders where id = ${orderId} and buyer_id = ${buyerId}`;
    if (!row) throw new DomainError('ORDER_NOT_FOUND', undefined, { orderId });
    return toOrder(row);
  }

  async listForBuyer(buyerId: string, limit = 100): Promise<Order[]> {
    const rows = await this.sql<OrderRow[]>`
      select * from orders where buyer_id = ${buyerId} order by created_at desc, id limit ${limit}`;
    return rows.map(toOrder);
  }

  async existing(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await this.sql<{ id: string }[]>`select id from orders where id = any(${this.sql.array([...ids])}::uuid[])`;
    return new Set(rows.map((row) => row.id));
  }

  async auditOrders(productId: string): Promise<readonly AuditOrder[]> {
    const rows = await this.sql<{ id: string; buyer_id: string; quantity: number; status: OrderStatus }[]>`
      select id, buyer_id, quantity, status from orders where product_id = ${productId}`;
    return rows.map((row) => ({ id: row.id, buyerId: row.buyer_id, quantity: row.quantity, status: row.status }));
  }
}
