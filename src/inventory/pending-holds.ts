/**
 * Holds a strategy granted outside PostgreSQL (redis-lua), as the order pipeline writes them into
 * inventory's database, and the tombstone the reconciler writes for one that never arrived.
 *
 * Both insert by the allocation's id, so whichever comes first decides: the consumer's row (a
 * hold, counted against `remaining`) or the reconciler's (voided, counted nowhere). The consumer
 * learns which, and records no order for a voided id.
 *
 * A hold arrives in a message, and the statement that writes it checks again what cannot differ
 * from what the gate granted, whatever the message says: the product sells through the gate, the
 * hold is of at least one unit, and it lasts no longer than any hold the product ever had. What an
 * admin may change while grants wait in the queue (the price, the limit, the window, the sale's
 * end) is not checked: the gate decided on the terms of its moment, and its buyer heard `201`.
 */
import type postgres from 'postgres';
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type { AllocationStatus } from './inventory.types.js';

/**
 * How far an API host's clock may be behind Redis's: a hold's `madeAt` is the host's clock just
 * after the grant, its expiry Redis `TIME` plus the hold, so the two may be further apart than the
 * hold by that much.
 */
const CLOCK_SKEW_SECONDS = 60;

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
    // cycle. The last selects see the table as it was before this statement: the rows that were
    // there already; the new ones come from `written`.
    const recorded = await refusedByConstraints(this.sql<(RecordedHold & { refused: boolean })[]>`
      with input as (
        select distinct on (id) * from jsonb_to_recordset(${this.sql.json(rows)}::jsonb)
          as t(id uuid, product_id uuid, buyer_id uuid, quantity integer, amount_cents bigint,
               expires_at timestamptz, created_at timestamptz)
         order by id),
      trusted as (
        select i.* from input i join products p on p.id = i.product_id
         where p.strategy = 'redis-lua' and i.quantity >= 1 and i.amount_cents >= 0
           and i.expires_at <= i.created_at
                               + make_interval(secs => greatest(p.hold_seconds, p.longest_hold_seconds) + ${CLOCK_SKEW_SECONDS})),
      written as (
        insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at, created_at)
        select id, product_id, buyer_id, quantity, amount_cents, 'held', expires_at, created_at from trusted order by id
        on conflict (id) do nothing
        returning id, product_id, quantity),
      -- Runs though nothing reads it (PostgreSQL runs every data-modifying WITH to completion).
      taken as (
        update products p set remaining = p.remaining - t.units, version = p.version + 1
          from (select product_id, sum(quantity)::int as units from written group by product_id order by product_id) t
         where p.id = t.product_id
        returning p.id)
      select id, 'held' as status, false as voided, false as refused from written
      union all
      select a.id, a.status, a.voided, false as refused from allocations a join input using (id)
      union all
      select i.id, 'cancelled' as status, false as voided, true as refused from input i
       where not exists (select 1 from trusted t where t.id = i.id)
         and not exists (select 1 from allocations a where a.id = i.id)`);
    const refused = recorded.filter((row) => row.refused).map((row) => row.id);
    if (refused.length > 0) {
      // Written: the others (each is idempotent by id). Refused: what no grant of the gate can be.
      throw new DomainError('VALIDATION_FAILED', `holds that are not grants of the Redis gate: ${refused.join(', ')}`, {
        errors: refused.map((id) => ({ field: `holds.${id}`, message: 'not a redis-lua product, no units, or a hold longer than the product ever had' })),
      });
    }
    const kept = recorded.map(({ id, status, voided }) => ({ id, status, voided }));
    if (kept.length === holds.length) return kept;
    // An id another writer inserted while this statement ran (the consumer and an early payment
    // writing the same hold): its row committed after this statement's snapshot, so read it now.
    const seen = new Set(kept.map((row) => row.id));
    const late = holds.filter((hold) => !seen.has(hold.id)).map((hold) => hold.id);
    const found = await this.sql<RecordedHold[]>`select id, status, voided from allocations where id = any(${this.sql.array(late)}::uuid[])`;
    return [...kept, ...found];
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

/**
 * A statement PostgreSQL refused for a constraint (class 23: `remaining` below zero, a key taken by
 * another row) will be refused the same way every time: a `VALIDATION_FAILED` that the consumer
 * gives up at once, rather than a fault to retry.
 */
async function refusedByConstraints<T>(statement: Promise<T>): Promise<T> {
  try {
    return await statement;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('23')) throw error;
    throw new DomainError('VALIDATION_FAILED', `PostgreSQL refuses these holds: ${(error as Error).message}`, {
      errors: [{ field: 'holds', message: (error as Error).message }],
    });
  }
}
