/**
 * `atomic` and `event-sourced` sell on the terms of the row they lock. An admin's change that
 * holds the product row when a purchase arrives makes the purchase's plain read see the old row
 * and its update wait; once the change commits, the sale must follow the new price, limit or
 * window, not the old read (event-sourced: its appended event is undone and it decides again).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

/** Runs `change` in a transaction that holds the product row until a purchase waits on it, then commits. */
async function changeUnderPurchase(
  productId: string,
  change: string,
  purchase: () => Promise<{ status: number; body: Record<string, unknown> }>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const sql = t.server.system.stores.databases.inventory;
  const tx = await sql.reserve();
  try {
    await tx`begin`;
    await tx.unsafe(`update products set ${change}, version = version + 1 where id = $1`, [productId]);
    const answer = purchase();
    // The purchase has read the old row and its update now waits for this transaction's lock.
    for (let tries = 0; ; tries += 1) {
      const [waiting] = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
      if ((waiting?.n ?? 0) > 0) break;
      if (tries > 500) throw new Error('the purchase never waited for the lock');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await tx`commit`;
    return await answer;
  } finally {
    tx.release();
  }
}

describe.each(['atomic', 'event-sourced'])('%s: a change that commits while a purchase waits for the row', (strategy) => {
  it('sells at the new price', async () => {
    const product = await t.api.createProduct({ priceCents: 1000, stock: 5, strategy });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const answer = await changeUnderPurchase(product.id, 'price_cents = 2000', () => t.api.purchase(buyer.token, product.id));
    expect(answer.status).toBe(201);
    expect(answer.body['order']).toMatchObject({ amountCents: 2000 });
  });

  it('refuses a quantity over a limit set meanwhile, and gives the units back', async () => {
    const product = await t.api.createProduct({ priceCents: 1000, stock: 5, perBuyerLimit: 5, strategy });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const answer = await changeUnderPurchase(product.id, 'per_buyer_limit = 1', () => t.api.purchase(buyer.token, product.id, 2));
    expect(answer.body).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 1 });
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ stocked: 5, held: 0, remaining: 5 });
  });

  it('says the sale ended, not that it sold out', async () => {
    const product = await t.api.createProduct({ priceCents: 1000, stock: 5, strategy });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const answer = await changeUnderPurchase(product.id, 'ended_at = now()', () => t.api.purchase(buyer.token, product.id));
    expect(answer.body).toMatchObject({ code: 'SALE_ENDED' });
  });
});
