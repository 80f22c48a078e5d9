/**
 * Finds a hold that a strategy deciding outside PostgreSQL (redis-lua) granted under an order id
 * and the order pipeline may not have written yet: what a payment or cancel of an order that is
 * not in orders' database asks before it waits for the pipeline, so that waiting is only for an
 * order that exists.
 *
 * @remarks The order id alone does not name its product, so every product of such a strategy whose
 * holds may still be live is asked, each by one field read (`TermsMirror.hold`: an HGET, sent
 * together in one round trip), never a scan of holds. A product whose sale ended longer ago than
 * its longest hold has no live hold left and is not asked. The list is read from PostgreSQL each
 * time, not cached: a product created by another process a moment ago must be found.
 */
import type { Sql } from '../infra/database.js';
import type { OutsideHold } from './inventory.types.js';
import type { ProductStrategies } from './product-strategies.js';

export class OutsideHolds {
  constructor(
    private readonly sql: Sql,
    private readonly strategies: ProductStrategies,
  ) {}

  /** See `OutsideHold`. */
  async of(buyerId: string, allocationId: string): Promise<OutsideHold> {
    const outside = this.strategies.outsideDatabase();
    if (outside.length === 0) return 'none';
    const mirrors = new Map(outside.map(({ name, terms }) => [name as string, terms]));
    const products = await this.sql<{ id: string; strategy: string }[]>`
      select id, strategy from products
       where strategy = any(${this.sql.array([...mirrors.keys()])}::text[])
         and coalesce(least(ended_at, closes_at), 'infinity')
             > now() - make_interval(secs => greatest(longest_hold_seconds, hold_seconds))`;
    const holds = await Promise.all(
      products.map(async ({ id, strategy }) => {
        const mirror = mirrors.get(strategy);
        if (mirror === undefined) return null;
        return mirror.hold(id, allocationId).catch(() => 'unreachable' as const);
      }),
    );
    let unreachable = false;
    for (const hold of holds) {
      if (hold === 'unreachable') unreachable = true;
      else if (hold !== null && hold.buyerId === buyerId) return hold.status === 'held' ? 'held' : 'settled';
    }
    return unreachable ? 'unreachable' : 'none';
  }
}
