/**
 * Records the orders of reservations just made, many in one statement: the purchases whose units
 * come back together (a `queue` group, a storm on any strategy) have their orders, and their keys,
 * written by one statement and one commit instead of one each (group commit through
 * `GroupBatches`). Each order keeps what recording it alone would do:
 *
 * - a keyed order and its key commit together or not at all: the key is written (answered with the
 *   order, or claimed with its id when it is paid next) unless it is taken, and the order only if
 *   its key was written;
 * - an order already recorded under the id (an earlier attempt with the key) is returned as it
 *   is, and nothing is written for it;
 * - an order whose key is taken comes back `key-taken`, and nothing is written for it;
 * - an order recorded writes its `held` event to the outbox (`order_events`), in the same statement.
 *
 * Keys are unique within a statement: two requests with one key never run at once in this
 * process (`IdempotencyKeys.hold`).
 */
import type postgres from 'postgres';
import type { Sql } from '../infra/database.js';
import { GroupBatches } from '../infra/group-batches.js';
import type { Allocation } from '../inventory/inventory.types.js';
import type { HeldKey, IdempotencyKeys } from './idempotency.js';
import type { OrderRow } from './order-rows.js';
import type { EventCounts } from './outbox.js';

/** What recording an order found: it recorded it, the order was there already, or the key was taken. */
export type Recorded =
  | { readonly kind: 'recorded'; readonly row: OrderRow }
  | { readonly kind: 'exists'; readonly row: OrderRow }
  | { readonly kind: 'key-taken' };

export interface OrderToRecord {
  readonly orderId: string;
  readonly buyerId: string;
  readonly allocation: Allocation;
  readonly held: HeldKey | undefined;
  /** Instant mode: the key is claimed with the order, and answered once it is paid. */
  readonly paysNext: boolean;
}

export class OrderRecords {
  private readonly batches = new GroupBatches<OrderToRecord, Recorded>((orders) => this.recordAll(orders));

  constructor(
    private readonly sql: Sql,
    private readonly keys: IdempotencyKeys,
    private readonly events: EventCounts,
  ) {}

  record(order: OrderToRecord): Promise<Recorded> {
    return this.batches.add(order);
  }

  private async recordAll(orders: readonly OrderToRecord[]): Promise<Recorded[]> {
    const rows = orders.map((order) => ({
      id: order.orderId,
      buyer_id: order.buyerId,
      product_id: order.allocation.productId,
      quantity: order.allocation.quantity,
      amount_cents: order.allocation.amountCents,
      expires_at: order.allocation.expiresAt,
      key: order.held?.key ?? null,
      claim_id: order.held?.claimId ?? null,
      scope: order.held?.scope ?? null,
      request_hash: order.held?.hash ?? null,
      answered: !order.paysNext,
    }));
    const written = await this.sql<(OrderRow & { recorded: boolean })[]>`
      with input as (
        select * from jsonb_to_recordset(${this.sql.json(rows as postgres.JSONValue)}::jsonb)
          as t(id uuid, buyer_id uuid, product_id uuid, quantity integer, amount_cents bigint, expires_at timestamptz,
               key text, claim_id uuid, scope text, request_hash text, answered boolean)),
      existing_order as (
        -- Only a keyed id can name an order already (an earlier attempt with the key): a minted one is new.
        select o.* from orders o join input i on i.id = o.id and i.key is not null),
      key_written as (
        insert into idempotency_keys as k (buyer_id, key, claim_id, scope, request_hash, status_code, response, order_id)
        select i.buyer_id, i.key, i.claim_id, i.scope, i.request_hash,
               case when i.answered then 201 end,
               case when i.answered then jsonb_build_object('ok', true, 'order',
                 order_fields_json(i.id, 'held', i.buyer_id, i.product_id, i.quantity, i.amount_cents, i.expires_at, now())) end,
               i.id
          from input i
         where i.key is not null and not exists (select 1 from existing_order e where e.id = i.id)
         order by i.buyer_id, i.key
        on conflict (buyer_id, key) do update
          set claim_id = excluded.claim_id, scope = excluded.scope, request_hash = excluded.request_hash,
              status_code = excluded.status_code, response = excluded.response, order_id = excluded.order_id,
              ended_at = null, created_at = now()
          where ${this.keys.takeable()}
        returning k.order_id),
      o as (
        insert into orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
        select i.id, i.buyer_id, i.product_id, i.quantity, i.amount_cents, 'held', i.expires_at
          from input i
         where not exists (select 1 from existing_order e where e.id = i.id)
           and (i.key is null or exists (select 1 from key_written w where w.order_id = i.id))
         order by i.id
        returning *),
      held_events as (
        -- Its outbox event, from the rows actually inserted: none for an order already there.
        insert into order_events (order_id, kind) select o.id, 'held' from o)
      select *, true as recorded from o
      union all
      select *, false as recorded from existing_order`;
    this.events.add('held', written.filter((row) => row.recorded).length);
    const byId = new Map(written.map((row) => [row.id, row]));
    return orders.map((order): Recorded => {
      const row = byId.get(order.orderId);
      if (row === undefined) return { kind: 'key-taken' };
      return { kind: row.recorded ? 'recorded' : 'exists', row };
    });
  }
}
