/**
 * Admin and operations routes cost what a page costs, however large the product: the audit reads
 * a page at a time and gives the same report, the product orders list pages by keyset (no offset,
 * no count of every row), and `/metrics` reads the product list and the outbox backlog at most
 * once per `METRICS_CACHE_MS` however many scrape, behind `METRICS_TOKEN` when it is set.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditProducts, type AuditSources } from '../src/audit/audit.js';
import { cachedReading } from '../src/infra/cached-reading.js';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { ADMIN_TOKEN, startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';

const METRICS_TOKEN = 'metrics-token-0123456789';

let t: TestServer;
let inventorySql: Sql;

beforeAll(async () => {
  const prefix = `t_${randomUUID().slice(0, 8)}_`;
  t = await startTestServer({ databasePrefix: prefix, metricsCacheMs: 60_000, metricsToken: METRICS_TOKEN });
  inventorySql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}inventory`), 1, 'flashsale:bounded-admin-test');
});
afterAll(async () => {
  await inventorySql?.end({ timeout: 5 });
  await t?.stop();
});

const orderOf = (answer: { body: Record<string, unknown> }): { id: string } => answer.body['order'] as { id: string };

describe('the audit', () => {
  it('pages through a product and gives the report it gives in one page, each read at most a page long', async () => {
    const buyers = await t.api.createBuyers(7, 100_000);
    const product = await t.api.createProduct({ stock: 9, perBuyerLimit: 1, holdSeconds: 300 });
    const ids: string[] = [];
    for (const buyer of buyers) ids.push(orderOf(await t.api.purchase(buyer.token, product.id)).id);
    const [payer, canceller] = buyers;
    if (!payer || !canceller) throw new Error('no buyers');
    expect((await t.api.call('POST', `/v1/orders/${ids[0]}/pay`, { token: payer.token })).status).toBe(200);
    expect((await t.api.call('POST', `/v1/orders/${ids[1]}/cancel`, { token: canceller.token })).status).toBe(200);
    // A sale whose order was never recorded (paid, so no sweep ends it), of a buyer who holds
    // another unit: an allocation without its order and a buyer over the limit, on whichever page they fall.
    const orphan = randomUUID();
    const buyer = buyers[2];
    if (!buyer) throw new Error('no buyer');
    await inventorySql`
      insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
      values (${orphan}, ${product.id}, ${buyer.id}, 1, 1000, 'paid', now() + interval '5 minutes')`;
    await inventorySql`update products set remaining = remaining - 1 where id = ${product.id}`;

    const whole = await t.api.audit(product.id);
    expect(whole.violations.map((v) => v.kind).sort()).toEqual(['ALLOCATION_WITHOUT_ORDER', 'BUYER_OVER_LIMIT']);

    const { inventory, orders } = t.server.system;
    let longest = 0;
    const noted = <T>(rows: readonly T[]): readonly T[] => {
      longest = Math.max(longest, rows.length);
      return rows;
    };
    const sources: AuditSources = {
      figures: (id) => inventory.auditFigures(id),
      allocations: async (id, page) => {
        const found = await inventory.auditAllocations(id, page);
        noted(found.allocations);
        return found;
      },
      allocationStates: async (id, orderIds) => noted(await inventory.auditAllocationStates(id, noted(orderIds))),
      orders: async (id, page) => {
        const found = await orders.auditOrders(id, page);
        noted(found.orders);
        return found;
      },
      missingOrders: async (orderIds) => noted(await orders.missing(noted(orderIds))),
      ledger: async (orderIds) => noted(await t.server.system.users.ledgerOf(noted(orderIds))),
    };
    const paged = await auditProducts(sources, [product.id], 2);
    expect(longest).toBe(2);
    expect(paged).toEqual(whole);
    expect(paged.products[0]).toMatchObject({ stocked: 9, held: 5, paid: 2, cancelled: 1, remaining: 2, orders: 7, oversold: 0 });
  });
});

describe("a product's orders list", () => {
  type Page = { orders: { id: string }[]; nextAfter: string | null };

  it('pages newest first by the last order seen, each order once, and refuses an offset', async () => {
    const buyers = await t.api.createBuyers(5, 100_000);
    const product = await t.api.createProduct({ stock: 10 });
    const ids: string[] = [];
    for (const buyer of buyers) ids.push(orderOf(await t.api.purchase(buyer.token, product.id)).id);
    const seen: string[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 10; pages += 1) {
      const query: string = after === null ? '?limit=2' : `?limit=2&after=${after}`;
      const page = await t.api.admin<Page>('GET', `/v1/admin/products/${product.id}/orders${query}`);
      expect(page.status).toBe(200);
      expect(Object.keys(page.body).sort()).toEqual(['nextAfter', 'orders']);
      seen.push(...page.body.orders.map((order) => order.id));
      after = page.body.nextAfter;
      if (after === null) break;
    }
    expect(seen).toEqual([...ids].reverse());
    // A deep offset is no longer something a caller can ask the database to walk.
    const deep = await t.api.admin('GET', `/v1/admin/products/${product.id}/orders?offset=1000000`);
    expect(deep).toMatchObject({ status: 400, body: { code: 'VALIDATION_FAILED' } });
    const elsewhere = await t.api.admin('GET', `/v1/admin/products/${product.id}/orders?after=${randomUUID()}`);
    expect(elsewhere).toMatchObject({ status: 400, body: { code: 'VALIDATION_FAILED' } });
  });
});

describe('/metrics', () => {
  it('reads the product list and the outbox backlog once per cache period, however many scrape', async () => {
    const { inventory, orders } = t.server.system;
    const calls = { products: 0, backlog: 0 };
    const listProducts = inventory.listProducts.bind(inventory);
    const backlog = orders.outbox.backlog.bind(orders.outbox);
    // Counted where the scrape reaches the modules: the app calls these through the client.
    Object.assign(inventory, {
      listProducts: (...args: Parameters<typeof listProducts>) => {
        calls.products += 1;
        return listProducts(...args);
      },
    });
    Object.assign(orders.outbox, {
      backlog: () => {
        calls.backlog += 1;
        return backlog();
      },
    });
    try {
      const product = await t.api.createProduct({ stock: 3 });
      const scrapes = await Promise.all(Array.from({ length: 5 }, () => t.api.call<string>('GET', '/metrics', { token: METRICS_TOKEN })));
      for (let i = 0; i < 15; i += 1) scrapes.push(await t.api.call<string>('GET', '/metrics', { token: METRICS_TOKEN }));
      expect(scrapes.map((scrape) => scrape.status)).toEqual(scrapes.map(() => 200));
      for (const scrape of scrapes) {
        expect(scrape.body).toContain(`flashsale_remaining_stock{product_id="${product.id}",strategy="atomic"} 3`);
        expect(scrape.body).toMatch(/^flashsale_order_events_unrelayed \d+$/m);
      }
      expect(calls).toEqual({ products: 1, backlog: 1 });
    } finally {
      Reflect.deleteProperty(inventory, 'listProducts');
      Reflect.deleteProperty(orders.outbox, 'backlog');
    }
  });

  it('answers only the metrics token (or the admin token) when METRICS_TOKEN is set', async () => {
    const bare = await t.api.call('GET', '/metrics');
    expect(bare).toMatchObject({ status: 401, body: { code: 'UNAUTHORIZED' } });
    expect(bare.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(await t.api.call('GET', '/metrics', { token: 'not-the-metrics-token-0123' })).toMatchObject({ status: 401, body: { code: 'UNAUTHORIZED' } });
    expect((await t.api.call('GET', '/metrics', { token: METRICS_TOKEN })).status).toBe(200);
    expect((await t.api.call('GET', '/metrics', { token: ADMIN_TOKEN })).status).toBe(200);
  });
});

describe('a cached reading', () => {
  it('reads once per period, shares a reading under way, and keeps the last one when a read fails', async () => {
    let now = 0;
    let reads = 0;
    let fail = false;
    const reading = cachedReading(
      async () => {
        reads += 1;
        if (fail) throw new Error('down');
        return reads;
      },
      1_000,
      () => now,
    );
    expect(await Promise.all([reading(), reading(), reading()])).toEqual([1, 1, 1]);
    now = 999;
    expect(await reading()).toBe(1);
    now = 1_000;
    expect(await reading()).toBe(2);
    fail = true;
    now = 5_000;
    expect(await reading()).toBe(2);
    expect(reads).toBe(3);
  });
});
