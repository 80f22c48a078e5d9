/** An order as its table stores it, and as the API shows it. */
import type { Order, OrderStatus } from './orders.client.js';

export interface OrderRow {
  id: string;
  buyer_id: string;
  product_id: string;
  quantity: number;
  amount_cents: number;
  status: OrderStatus;
  expires_at: Date;
  created_at: Date;
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
