/**
 * The `event-sourced` strategy's stock streams. After a storm of purchases, cancels, payments,
 * expiries and stock changes on several products, each product's stream replayed from event 1
 * must give back the live `remaining` (and the stock, held and paid units); every allocation must
 * have one `reserved` event and one ending event that matches its status; snapshots must sit every
 * 100 events and equal the replay up to them; and a reservation must decide from the latest
 * snapshot and the fewer than 100 events after it, not from the whole history. The events route
 * pages through a product's history.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tx } from '../src/infra/database.js';
import type { StockEvent, StockEventsPage } from '../src/inventory/inventory.types.js';
import type { Answer, Product } from './support/api.js';
import { startTestServer, type TestServer } from './support/server.js';
import { expectInvariant, storm } from './support/storm.js';

/** `stock_snapshot_every()` in the migrations. */
const SNAPSHOT_EVERY = 100;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

type Buyer = { id: string; token: string };

function orderOf(answer: Answer): { id: string } {
  return answer.body['order'] as { id: string };
}

/** An event without its time, to compare with what is expected. */
function withoutTime(event: StockEvent): Omit<StockEvent, 'at'> {
  return { seq: event.seq, kind: event.kind, units: event.units, allocationId: event.allocationId, buyerId: event.buyerId };
}

/** Every event of the product, read through the events route `limit` at a time. */
async function pagedEvents(productId: string, limit: number): Promise<StockEvent[]> {
  const events: StockEvent[] = [];
  let after = 0;
  for (let page = 0; ; page += 1) {
    expect(page, 'pages').toBeLessThan(1_000);
    const answer = await t.api.admin<StockEventsPage>('GET', `/v1/admin/products/${productId}/events?after=${after}&limit=${limit}`);
    expect(answer.status).toBe(200);
    expect(answer.body.events.length).toBeLessThanOrEqual(limit);
    events.push(...answer.body.events);
    if (answer.body.nextAfter === null) return events;
    expect(answer.body.events).toHaveLength(limit);
    after = answer.body.nextAfter;
  }
}

interface Totals {
  stocked: number;
  held: number;
  paid: number;
}

/** Replays events in order from nothing: what they say is stocked, held and paid. */
function replay(events: readonly Pick<StockEvent, 'kind' | 'units'>[]): Totals {
  const totals = { stocked: 0, held: 0, paid: 0 };
  for (const event of events) {
    switch (event.kind) {
      case 'stocked':
        totals.stocked += event.units;
        break;
      case 'reserved':
        totals.held += event.units;
        break;
      case 'released':
      case 'expired':
        totals.held -= event.units;
        break;
      case 'purchased':
        totals.held -= event.units;
        totals.paid += event.units;
        break;
    }
  }
  return totals;
}

async function stats(productId: string): Promise<Record<string, number>> {
  const answer = await t.api.admin<Record<string, number>>('GET', `/v1/admin/products/${productId}/stats`);
  expect(answer.status).toBe(200);
  return answer.body;
}

/** Runs `work` in a transaction on the inventory database and rolls it back, whatever it did. */
async function rolledBack<T>(work: (tx: Tx) => Promise<T>): Promise<T> {
  const tx = await t.server.system.stores.databases.inventory.reserve();
  try {
    await tx`begin`;
    try {
      return await work(tx);
    } finally {
      await tx`rollback`;
    }
  } finally {
    tx.release();
  }
}

interface ReserveRow {
  outcome: string;
  remaining: number;
  from_seq: number;
  replayed: number;
}

function reserveOnce(tx: Tx, productId: string, buyerId: string, quantity: number): Promise<ReserveRow[]> {
  return tx<ReserveRow[]>`
    select outcome, remaining, from_seq, replayed from reserve_event_sourced(${randomUUID()}, ${productId}, ${buyerId}, ${quantity}, null)`;
}

describe('the event-sourced strategy after a storm of purchases, cancels, payments, expiries and stock changes', () => {
  /** `big`: most events (several snapshots), no limit; `limited`: 2 per buyer; `single`: a herd for 1 unit. */
  let big: Product;
  let limited: Product;
  let single: Product;
  let products: Product[];
  let answers: Answer[];
  let stockChanges: Answer[];

  beforeAll(async () => {
    big = await t.api.createProduct({ stock: 120, holdSeconds: 6, strategy: 'event-sourced' });
    limited = await t.api.createProduct({ stock: 40, holdSeconds: 6, perBuyerLimit: 2, strategy: 'event-sourced' });
    single = await t.api.createProduct({ stock: 1, holdSeconds: 3, strategy: 'event-sourced' });
    products = [big, limited, single];
    const buyers = await t.api.createBuyers(900);
    const buyer = (i: number): Buyer => {
      const found = buyers[i];
      if (!found) throw new Error(`no buyer ${i}`);
      return found;
    };

    // First wave: 400 buyers for `big`, 150 firing three at once at `limited` (2 each at most),
    // 100 for `single`.
    const first = await storm(650, async (i) => {
      if (i < 400) return [await t.api.purchase(buyer(i).token, big.id)];
      if (i < 550) return storm(3, () => t.api.purchase(buyer(i).token, limited.id));
      return [await t.api.purchase(buyer(i).token, single.id)];
    });
    answers = first.flat();

    // Second wave, all at once: a third of the holders cancel, a third pay, a third let the hold
    // expire; 250 new buyers chase what comes back; the admin adds 30 units to `big` and removes 10.
    const holders = first.flatMap((mine, i) => mine.filter((a) => a.status === 201).map((a) => ({ buyer: buyer(i), orderId: orderOf(a).id })));
    const settling = holders.map(async ({ buyer: b, orderId }, k) => {
      if (k % 3 === 0) return t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token: b.token });
      if (k % 3 === 1) return t.api.call('POST', `/v1/orders/${orderId}/pay`, { token: b.token });
      return undefined;
    });
    const chasing = storm(250, (i) => t.api.purchase(buyer(650 + i).token, i % 5 === 0 ? limited.id : big.id));
    const restock = (async () => [
      await t.api.admin('PATCH', `/v1/admin/products/${big.id}`, { addStock: 30 }),
      await t.api.admin('PATCH', `/v1/admin/products/${big.id}`, { addStock: -10 }),
    ])();
    // A hold may lapse before its cancel or payment on a slow machine (409, 410): it expires instead.
    for (const answer of await Promise.all(settling)) if (answer) expect([200, 409, 410], JSON.stringify(answer.body)).toContain(answer.status);
    answers.push(...(await chasing));
    stockChanges = await restock;

    // Every hold left expires (6 s; 3 s for `single`) and the sweeper returns it.
    for (let tries = 0; ; tries += 1) {
      const held = await Promise.all(products.map(async (product) => (await stats(product.id))['held']));
      if (held.every((units) => units === 0)) break;
      expect(tries, 'holds still held').toBeLessThan(100);
      await sleep(200);
    }
  });

  async function allEvents(productId: string): Promise<StockEvent[]> {
    const sql = t.server.system.stores.databases.inventory;
    const rows = await sql<{ seq: number; kind: StockEvent['kind']; units: number; allocation_id: string | null; buyer_id: string | null }[]>`
      select seq, kind, units, allocation_id, buyer_id from stock_events where product_id = ${productId} order by seq`;
    return rows.map((row) => ({ seq: row.seq, kind: row.kind, units: row.units, allocationId: row.allocation_id, buyerId: row.buyer_id, at: '' }));
  }

  it('rebuilds every product\'s remaining, stock, held and paid units by replaying its events from the first', async () => {
    // The admin's changes went through (the removal may find fewer than 10 free units: then it is refused, and logs nothing).
    expect(stockChanges[0]?.status).toBe(200);
    expect([200, 409]).toContain(stockChanges[1]?.status);
    const expectedStock = 150 - (stockChanges[1]?.status === 200 ? 10 : 0);

    for (const product of products) {
      const events = await pagedEvents(product.id, 37);
      expect(events.map((event) => event.seq), 'numbered 1, 2, 3, … with no gap').toEqual(events.map((_, i) => i + 1));
      // The route pages through exactly what the table holds.
      expect(events.map(withoutTime)).toEqual((await allEvents(product.id)).map(withoutTime));

      const live = (await t.api.call<Product>('GET', `/v1/products/${product.id}`)).body;
      const counted = await stats(product.id);
      const replayed = replay(events);
      expect(replayed.stocked - replayed.held - replayed.paid, 'replayed availability = live remaining').toBe(live.remaining);
      expect(replayed).toEqual({ stocked: live.stock, held: counted['held'], paid: counted['paid'] });
      await expectInvariant(t.api, product.id, answers);
    }
    expect((await t.api.call<Product>('GET', `/v1/products/${big.id}`)).body.stock).toBe(expectedStock);
    // The storm did what it was meant to: units sold, paid, cancelled, expired and sold again.
    const bigStats = await stats(big.id);
    expect(bigStats['paid']).toBeGreaterThan(0);
    expect(bigStats['cancelled']).toBeGreaterThan(0);
    expect(bigStats['expired']).toBeGreaterThan(0);
    expect((await allEvents(big.id)).length).toBeGreaterThan(2 * SNAPSHOT_EVERY);
  });

  it('records each allocation\'s reservation once and its end once, as its status says', async () => {
    const sql = t.server.system.stores.databases.inventory;
    const ending = { held: null, cancelled: 'released', expired: 'expired', paid: 'purchased' } as const;
    for (const product of products) {
      const allocations = await sql<{ id: string; buyer_id: string; quantity: number; status: keyof typeof ending }[]>`
        select id, buyer_id, quantity, status from allocations where product_id = ${product.id}`;
      expect(allocations.length).toBeGreaterThan(0);
      const events = await allEvents(product.id);
      const byAllocation = new Map<string, StockEvent[]>();
      for (const event of events.filter((e) => e.kind !== 'stocked')) {
        byAllocation.set(event.allocationId ?? '', [...(byAllocation.get(event.allocationId ?? '') ?? []), event]);
      }
      expect(new Set(byAllocation.keys())).toEqual(new Set(allocations.map((a) => a.id)));
      for (const allocation of allocations) {
        const mine = byAllocation.get(allocation.id) ?? [];
        const end = ending[allocation.status];
        expect(mine.map((event) => event.kind), allocation.id).toEqual(end === null ? ['reserved'] : ['reserved', end]);
        for (const event of mine) expect(event).toMatchObject({ units: allocation.quantity, buyerId: allocation.buyer_id });
      }
    }
  });

  it('writes a snapshot every 100 events, each equal to replaying the events up to it', async () => {
    const sql = t.server.system.stores.databases.inventory;
    const [every] = await sql<{ n: number }[]>`select stock_snapshot_every() as n`;
    expect(every?.n).toBe(SNAPSHOT_EVERY);
    for (const product of products) {
      const events = await allEvents(product.id);
      const snapshots = await sql<{ seq: number; stocked: number; held: number; paid: number }[]>`
        select seq, stocked, held, paid from stock_snapshots where product_id = ${product.id} order by seq`;
      const due = Array.from({ length: Math.floor(events.length / SNAPSHOT_EVERY) }, (_, i) => (i + 1) * SNAPSHOT_EVERY);
      expect(snapshots.map((snapshot) => snapshot.seq)).toEqual(due);
      for (const { seq, ...totals } of snapshots) expect(totals, `snapshot ${seq}`).toEqual(replay(events.slice(0, seq)));
    }
  });

  it('decides a reservation from the latest snapshot and the fewer than 100 events after it', async () => {
    const events = await allEvents(big.id);
    const latest = Math.floor(events.length / SNAPSHOT_EVERY) * SNAPSHOT_EVERY;
    expect(latest).toBeGreaterThanOrEqual(2 * SNAPSHOT_EVERY);
    const live = (await t.api.call<Product>('GET', `/v1/products/${big.id}`)).body;
    // Holds expired, a third was paid: units are free again.
    expect(live.remaining).toBeGreaterThan(0);
    const [someone] = await t.api.createBuyers(1);
    if (!someone) throw new Error('no buyer');

    const [made] = await rolledBack((tx) => reserveOnce(tx, big.id, someone.id, 1));
    expect(made).toEqual({ outcome: 'OK', remaining: live.remaining - 1, from_seq: latest, replayed: events.length - latest });
    expect(made?.replayed).toBeLessThan(SNAPSHOT_EVERY);

    // An event before the snapshot is never read: making the first one stock 1,000 more changes nothing.
    const [history] = await rolledBack(async (tx) => {
      await tx`update stock_events set units = units + 1000 where product_id = ${big.id} and seq = 1`;
      return reserveOnce(tx, big.id, someone.id, live.remaining + 1);
    });
    expect(history).toMatchObject({ outcome: 'SOLD_OUT', remaining: live.remaining });

    // The snapshot is read: one that says every unit is held leaves none to sell.
    const [snapshot] = await rolledBack(async (tx) => {
      await tx`update stock_snapshots set held = held + ${live.remaining} where product_id = ${big.id} and seq = ${latest}`;
      return reserveOnce(tx, big.id, someone.id, 1);
    });
    expect(snapshot).toMatchObject({ outcome: 'SOLD_OUT', remaining: 0 });
  });
});

describe('the events route', () => {
  it("pages through a product's history in order: its stock, the admin's changes and each step of a hold", async () => {
    const product = await t.api.createProduct({ stock: 5, holdSeconds: 1, strategy: 'event-sourced' });
    const [a, b, c] = await t.api.createBuyers(3);
    if (!a || !b || !c) throw new Error('no buyers');
    const change = (addStock: number) => t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock });
    expect((await change(3)).status).toBe(200);
    expect((await change(-2)).status).toBe(200);
    // Refused (only 6 are free): it logs nothing.
    expect((await change(-7)).status).toBe(409);
    // A change of terms alone is not a stock event.
    expect((await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { priceCents: 1234 })).status).toBe(200);

    const cancelled = orderOf(await t.api.purchase(a.token, product.id, 2)).id;
    expect((await t.api.call('POST', `/v1/orders/${cancelled}/cancel`, { token: a.token })).status).toBe(200);
    const paid = orderOf(await t.api.purchase(b.token, product.id, 1)).id;
    expect((await t.api.call('POST', `/v1/orders/${paid}/pay`, { token: b.token })).status).toBe(200);
    const lapsed = orderOf(await t.api.purchase(c.token, product.id, 3)).id;
    // The sweeper returns it within a second or so of its expiry.
    for (let tries = 0; (await stats(product.id))['expired'] !== 3; tries += 1) {
      expect(tries, 'the hold never expired').toBeLessThan(50);
      await sleep(100);
    }

    const expected = [
      { seq: 1, kind: 'stocked', units: 5, allocationId: null, buyerId: null },
      { seq: 2, kind: 'stocked', units: 3, allocationId: null, buyerId: null },
      { seq: 3, kind: 'stocked', units: -2, allocationId: null, buyerId: null },
      { seq: 4, kind: 'reserved', units: 2, allocationId: cancelled, buyerId: a.id },
      { seq: 5, kind: 'released', units: 2, allocationId: cancelled, buyerId: a.id },
      { seq: 6, kind: 'reserved', units: 1, allocationId: paid, buyerId: b.id },
      { seq: 7, kind: 'purchased', units: 1, allocationId: paid, buyerId: b.id },
      { seq: 8, kind: 'reserved', units: 3, allocationId: lapsed, buyerId: c.id },
      { seq: 9, kind: 'expired', units: 3, allocationId: lapsed, buyerId: c.id },
    ];
    const path = `/v1/admin/products/${product.id}/events`;
    const whole = await t.api.admin<StockEventsPage>('GET', path);
    expect(whole.status).toBe(200);
    expect(whole.body.nextAfter).toBeNull();
    expect(whole.body.events.map(withoutTime)).toEqual(expected);
    for (const event of whole.body.events) expect(Date.parse(event.at)).not.toBeNaN();

    // Four at a time: 1–4, 5–8, 9.
    const first = await t.api.admin<StockEventsPage>('GET', `${path}?limit=4`);
    expect(first.body.events.map((event) => event.seq)).toEqual([1, 2, 3, 4]);
    expect(first.body.nextAfter).toBe(4);
    const second = await t.api.admin<StockEventsPage>('GET', `${path}?after=4&limit=4`);
    expect(second.body.events.map((event) => event.seq)).toEqual([5, 6, 7, 8]);
    expect(second.body.nextAfter).toBe(8);
    const last = await t.api.admin<StockEventsPage>('GET', `${path}?after=8&limit=4`);
    expect(last.body).toMatchObject({ events: [{ seq: 9 }], nextAfter: null });
    // A page that ends exactly at the last event is the last page.
    expect((await t.api.admin<StockEventsPage>('GET', `${path}?after=5&limit=4`)).body.nextAfter).toBeNull();
    expect((await t.api.admin<StockEventsPage>('GET', `${path}?after=9`)).body).toEqual({ events: [], nextAfter: null });

    const live = (await t.api.call<Product>('GET', `/v1/products/${product.id}`)).body;
    const totals = replay(whole.body.events);
    expect(totals).toEqual({ stocked: 6, held: 0, paid: 1 });
    expect(live).toMatchObject({ stock: 6, remaining: 5 });
  });

  it('answers a product under another strategy with no events, and refuses what is malformed, unknown or not the admin', async () => {
    const other = await t.api.createProduct({ stock: 3, strategy: 'atomic' });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    expect((await t.api.purchase(buyer.token, other.id)).status).toBe(201);
    expect((await t.api.admin('GET', `/v1/admin/products/${other.id}/events`)).body).toEqual({ events: [], nextAfter: null });

    const path = `/v1/admin/products/${other.id}/events`;
    for (const query of ['limit=0', 'limit=1001', 'after=-1', 'after=x', 'since=1']) {
      const answer = await t.api.admin('GET', `${path}?${query}`);
      expect(answer.status, query).toBe(400);
      expect(answer.body).toMatchObject({ code: 'VALIDATION_FAILED' });
    }
    expect((await t.api.admin('GET', '/v1/admin/products/42/events')).body).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect((await t.api.admin('GET', `/v1/admin/products/${randomUUID()}/events`)).body).toMatchObject({ code: 'PRODUCT_NOT_FOUND' });
    expect((await t.api.call('GET', path)).body).toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await t.api.call('GET', path, { token: buyer.token })).body).toMatchObject({ code: 'FORBIDDEN' });
  });
});
