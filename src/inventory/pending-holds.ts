/**
 * Holds a strategy granted outside PostgreSQL (redis-lua), as the order pipeline writes them into
 * inventory's database, and the tombstone the reconciler writes for one that never arrived.
 *
 * Both insert by the allocation's id, so whichever comes first decides: the consumer's row (a
 * hold, counted against `remaining`) or the reconciler's (voided, counted nowhere). The consumer
 * learns which, and records no order for a voided id.
 */
import type postgres from 'postgres';
import type { Sql } from '../infra/database.js';
import type { AllocationStatus } from './inventory.types.js';

/** A granted hold on its way to the database (see `PlacedOrder`). */
export interface PendingHold {
  readonly id: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly amountCents: number;
  readonly expiresAt: string;
  /** When it was granted (ISO). */
  readonly madeAt: string;
}

/** What the database has under a pending hold's id once it was written. */
export interface RecordedHold {
  readonly id: string;
  /** The allocation's status now (a hold written earlier may have been paid, cancelled or expired since). */
  readonly status: AllocationStatus;
  /** The reconciler voided the id first: no order may be recorded for it. */
  readonly voided: boolean;
}

/** The holds as rows of `jsonb_to_recordset`, named as the table's columns. */
function asRows(holds: readonly PendingHold[]): postgres.JSONValue {
  return holds.map((hold) => ({
    id: hold.id,
    product_id: hold.productId,
    buyer_id: hold.buyerId,
    quantity: hold.quantity,
    amount_cents: hold.amountCents,
    expires_at: hold.expiresAt,
    created_at: hold.madeAt,
  }));
}

export class PendingHolds {
  constructor(private readonly sql: Sql) {}

  /**
   * Writes the holds not written yet, in one statement: each as `held`, `remaining` of each
   * product down by its units. Returns every id's row as it now is.
   */
  async record(holds: readonly PendingHold[]): Promise<RecordedHold[]> {
    if (holds.length === 0) return [];
    const rows = asRows(holds);
    // Rows in id order and products in id order, so two batches never wait on each other in a
    // cycle. The last select sees the table as it was before this statement: the rows that were
    // there already; the new ones come from `written`.
    const recorded = await this.sql<RecordedHold[]>`
      with input as (
        select distinct on (id) * from jsonb_to_recordset(${this.sql.json(rows)}::jsonb)
          as t(id uuid, product_id uuid, buyer_id uuid, quantity integer, amount_cents bigint,
               expires_at timestamptz, created_at timestamptz)
         order by id),
      written as (
        insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at, created_at)
        select id, product_id, buyer_id, quantity, amount_cents, 'held', expires_at, created_at from input order by id
        on conflict (id) do nothing
        returning id, product_id, quantity),
      -- Runs though nothing reads it (PostgreSQL runs every data-modifying WITH to completion).
      taken as (
        update products p set remaining = p.remaining - t.units, version = p.version + 1
          from (select product_id, sum(quantity)::int as units from written group by product_id order by product_id) t
         where p.id = t.product_id
        returning p.id)
      select id, 'held' as status, false as voided from written
      union all
      select a.id, a.status, a.voided from allocations a join input using (id)`;
    if (recorded.length === holds.length) return recorded;
    // An id another writer inserted while this statement ran (the consumer and an early payment
    // writing the same hold): its row committed after this statement's snapshot, so read it now.
    const seen = new Set(recorded.map((row) => row.id));
    const late = holds.filter((hold) => !seen.has(hold.id)).map((hold) => hold.id);
    const found = await this.sql<RecordedHold[]>`select id, status, voided from allocations where id = any(${this.sql.array(late)}::uuid[])`;
    return [...recorded, ...found];
  }

  /**
   * Voids holds that never reached the database, in one statement: writes each id `cancelled` and
   * voided unless a row has it already. Returns the ids voided now (their units may go back to the
   * gate); an id left out was written by the consumer first (it is not stranded).
   */
  async void(holds: readonly PendingHold[]): Promise<string[]> {
    if (holds.length === 0) return [];
    const rows = asRows(holds);
    const voided = await this.sql<{ id: string }[]>`
      insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at, created_at,
                               settled_at, voided)
      select id, product_id, buyer_id, quantity, amount_cents, 'cancelled', expires_at, created_at, now(), true
        from jsonb_to_recordset(${this.sql.json(rows)}::jsonb)
          as t(id uuid, product_id uuid, buyer_id uuid, quantity integer, amount_cents bigint,
               expires_at timestamptz, created_at timestamptz)
       order by id
      on conflict (id) do nothing
      returning id`;
    return voided.map((row) => row.id);
  }
}
