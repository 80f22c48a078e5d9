/**
 * Rows and tables held by another transaction, so the steps that need them stall at the store on
 * cue: a product's row (purchases of it), any row by its id (a buyer's balance, an order), a whole
 * table (every statement that reads it).
 */
import type { Sql } from '../../src/infra/database.js';

export interface HeldRow {
  /** Ends the holding transaction; safe to call again. */
  release(): Promise<void>;
}

/** Resolves once the row is held (so no purchase can reserve before it), until `release()`. */
export function holdProductRow(sql: Sql, productId: string): Promise<HeldRow> {
  return holding(sql, (tx) => tx`select 1 from products where id = ${productId} for update`);
}

/**
 * Holds the row of `table` whose `id` is `id` (`for no key update`): updates of it wait; reads,
 * and the foreign-key checks of rows that reference it, do not.
 */
export function holdRow(sql: Sql, table: string, id: string): Promise<HeldRow> {
  return holding(sql, (tx) => tx`select 1 from ${tx(table)} where id = ${id} for no key update`);
}

/** Holds all of `table` (`access exclusive`): every statement that reads or writes it waits. */
export function holdTable(sql: Sql, table: string): Promise<HeldRow> {
  return holding(sql, (tx) => tx`lock table ${tx(table)} in access exclusive mode`);
}

async function holding(sql: Sql, take: (tx: Sql) => Promise<unknown>): Promise<HeldRow> {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let held = (): void => undefined;
  const isHeld = new Promise<void>((resolve) => {
    held = resolve;
  });
  const open = sql.begin(async (tx) => {
    await take(tx as unknown as Sql);
    held();
    await released;
  });
  // A failure to take the row must not leave the caller waiting for `isHeld`.
  await Promise.race([isHeld, open]);
  return {
    release: async () => {
      release();
      await open;
    },
  };
}
