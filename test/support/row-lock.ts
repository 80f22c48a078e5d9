/** A product's row held by another transaction, so purchases of it stall at the store on cue. */
import type { Sql } from '../../src/infra/database.js';

export interface HeldRow {
  /** Ends the holding transaction; safe to call again. */
  release(): Promise<void>;
}

/** Resolves once the row is held (so no purchase can reserve before it), until `release()`. */
export async function holdProductRow(sql: Sql, productId: string): Promise<HeldRow> {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let held = (): void => undefined;
  const isHeld = new Promise<void>((resolve) => {
    held = resolve;
  });
  const holding = sql.begin(async (tx) => {
    await tx`select 1 from products where id = ${productId} for update`;
    held();
    await released;
  });
  // A failure to take the row must not leave the caller waiting for `isHeld`.
  await Promise.race([isHeld, holding]);
  return {
    release: async () => {
      release();
      await holding;
    },
  };
}
