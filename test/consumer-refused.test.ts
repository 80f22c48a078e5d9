/**
 * Fault drill: PostgreSQL refusing the order pipeline's consumer for 10 s while orders flow. The
 * consumer runs as its own process (`flashsale worker`, the API with `WORKER=false`) and connects
 * as a PostgreSQL role of its own, made here; mid-flow the role is switched to `NOLOGIN` and its
 * sessions are terminated, and 10 s later it may log in again. Meanwhile buyers keep being
 * answered `201` (the broker holds their orders), and some of them pay at once (the API writes
 * those orders itself). After: every `201` written to PostgreSQL exactly once, nothing
 * dead-lettered, nothing stranded, every payment debited once, the audit clean. The role is
 * dropped at the end.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODULE_NAMES } from '../src/config.js';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import type { Pipeline } from '../src/pipeline/pipeline.js';
import type { Answer } from './support/api.js';
import {
  answersByCode,
  codeOf,
  DRILL_SIZE,
  expectAnsweredWell,
  expectChargedOnce,
  NO_HANG_MS,
  orderIdOf,
  ordersFound,
  reportDrill,
  startDrillServer,
  untilAnswered,
  waitFor,
  type BuyerRun,
  type DrillServer,
} from './support/drill.js';
import { envOf, startFlashsale, stopAll, type FlashsaleProcess } from './support/flashsale-process.js';
import { TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { expectInvariant, storm } from './support/storm.js';

/** Buyers arrive evenly over this long, so orders flow before, during and after the refusal. */
const ARRIVALS_MS = 14_000;
const REFUSED_AT_MS = 2_000;
const REFUSED_MS = 10_000;
const PRICE = 1_500;
const BALANCE = 100_000;

let drill: DrillServer;
let t: TestServer;
let pipeline: Pipeline;
let admin: Sql;
let role: string;
let worker: FlashsaleProcess | undefined;

beforeAll(async () => {
  // Within the file's share of PostgreSQL connections (pg-budget.ts), beside the worker's own pools.
  drill = await startDrillServer({ strategy: 'redis-lua', worker: false, dbPoolSize: 4 });
  ({ t, pipeline } = drill);
  // A role only the consumer uses, with what it needs on this server's module databases: to
  // read and write their tables, and to run the (already applied) migrations at start-up.
  role = `${t.config.databasePrefix}consumer`;
  admin = connect(TEST_DATABASE_URL, 1, 'flashsale:consumer-refused-test');
  await admin.unsafe(`create role "${role}" login`);
  for (const module of MODULE_NAMES) {
    const sql = connect(databaseUrl(TEST_DATABASE_URL, `${t.config.databasePrefix}${module}`), 1, 'flashsale:consumer-refused-test');
    try {
      await sql.unsafe(`grant usage, create on schema public to "${role}"`);
      await sql.unsafe(`grant select, insert, update, delete on all tables in schema public to "${role}"`);
      await sql.unsafe(`grant usage, select, update on all sequences in schema public to "${role}"`);
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  const asRole = new URL(TEST_DATABASE_URL);
  asRole.username = role;
  asRole.password = '';
  worker = await startFlashsale('worker', envOf(t.config, { DATABASE_URL: asRole.toString() }), 'flashsale worker:');
});
afterAll(async () => {
  await worker?.stop();
  await stopAll();
  await drill?.stop();
  if (admin && role) {
    await admin.unsafe(`drop role if exists "${role}"`);
    await admin.end({ timeout: 5 });
  }
});

/** Switches the consumer's role to NOLOGIN and cuts its sessions; or lets it log in again. */
async function refuseConsumer(refuse: boolean): Promise<void> {
  await admin.unsafe(`alter role "${role}" ${refuse ? 'nologin' : 'login'}`);
  if (refuse) await admin`select pg_terminate_backend(pid) from pg_stat_activity where usename = ${role}`;
}

describe('PostgreSQL refusing the consumer for 10 s while orders flow', () => {
  it('keeps answering 201, and writes every order exactly once when the consumer is let in again', async () => {
    const BUYERS = DRILL_SIZE.buyers;
    // Enough units to be selling through the refusal; the last arrivals find them gone.
    const STOCK = Math.ceil(BUYERS * 0.8);
    const product = await t.api.createProduct({ stock: STOCK, perBuyerLimit: 1, priceCents: PRICE });
    const buyers = await t.api.createBuyers(BUYERS, BALANCE);
    const ordersSql = t.server.system.stores.databases.orders;
    const ordersInPostgres = async (): Promise<number> => {
      const [row] = await ordersSql<{ n: number }[]>`select count(*)::int as n from orders where product_id = ${product.id}`;
      return row?.n ?? 0;
    };

    const started = performance.now();
    const won: { at: number; orderId: string }[] = [];
    const window = { refusedAt: Infinity, backAt: Infinity, heldByBroker: 0 };
    const refusal = (async () => {
      await sleep(REFUSED_AT_MS);
      await refuseConsumer(true);
      window.refusedAt = performance.now();
      await sleep(REFUSED_MS);
      // Confirmed to buyers, not yet in PostgreSQL: in the broker, waiting for the consumer.
      window.heldByBroker = won.length - (await ordersInPostgres());
      await refuseConsumer(false);
      window.backAt = performance.now();
    })();
    const payments: BuyerRun[] = [];
    const runs = await storm(BUYERS, async (i) => {
      await sleep((i * ARRIVALS_MS) / BUYERS);
      const token = buyers[i]?.token ?? '';
      const run = await untilAnswered(() => t.api.purchase(token, product.id, 1, { 'idempotency-key': `refused-${i}` }));
      if (run.final?.status !== 201) return run;
      won.push({ at: performance.now(), orderId: orderIdOf(run.final) });
      // One winner in four pays at once: the API writes the order itself, the consumer later changes nothing.
      if (i % 4 === 0) {
        const orderId = orderIdOf(run.final);
        payments.push(
          await untilAnswered(() => t.api.call('POST', `/v1/orders/${orderId}/pay`, { token, headers: { 'idempotency-key': `pay-${i}` } })),
        );
      }
      return run;
    });
    await refusal;

    expectAnsweredWell([...runs, ...payments], NO_HANG_MS);
    const finals = runs.map((run) => (run.final ? codeOf(run.final) : 'none'));
    expect(finals.filter((code) => code !== '201' && code !== '409 SOLD_OUT')).toEqual([]);
    expect(payments.map((run) => run.final?.status)).toEqual(payments.map(() => 200));
    // Orders went on being confirmed while the consumer was refused, and waited in the broker.
    const soldWhileRefused = won.filter((w) => w.at > window.refusedAt && w.at < window.backAt).length;
    expect(soldWhileRefused).toBeGreaterThan(0);
    expect(window.heldByBroker).toBeGreaterThan(0);
    expect(won.length).toBe(Math.min(STOCK, BUYERS));

    // Let in again, the consumer writes every one of them, exactly once, and dead-letters nothing.
    await waitFor('every 201 in PostgreSQL', async () => (await ordersInPostgres()) >= won.length, 60_000, 100);
    const writtenAt = performance.now();
    await waitFor('the queue drained', async () => (await pipeline.broker.depth()).placed === 0, 30_000);
    expect(worker?.child.exitCode).toBeNull();
    // The refusal was waited out, not taken for a bad order (retried alone, then dead-lettered).
    expect(worker?.output()).not.toContain('could not write a placed order');
    const depth = await pipeline.broker.depth();
    expect(depth.dead).toBe(0);
    const rows = await ordersSql<{ id: string }[]>`select id from orders where product_id = ${product.id}`;
    expect(new Set(rows.map((row) => row.id))).toEqual(new Set(won.map((w) => w.orderId)));
    const reconciler = t.server.system.reconciler;
    if (!reconciler) throw new Error('no reconciler');
    const drift = (await reconciler.run()).products.find((p) => p.productId === product.id);
    expect(drift).toMatchObject({ stranded: 0, unitsNotInPostgres: 0 });
    await expectInvariant(t.api, product.id, runs.flatMap((run) => (run.final ? [run.final] : [])) as Answer[]);
    const money = await expectChargedOnce(t.server.system.stores.databases, buyers.map((buyer) => buyer.id), BALANCE);
    expect(money.paid).toBe(payments.length);
    const audit = await t.api.audit(product.id);

    await reportDrill({
      drill: 'consumer-refused',
      strategy: 'redis-lua',
      buyers: BUYERS,
      stock: STOCK,
      answered2xx: won.length,
      ordersFound: await ordersFound(t.api, won.map((w) => w.orderId)),
      oversold: audit.products[0]?.oversold ?? 0,
      stranded: drift?.stranded ?? 0,
      returned: drift?.returned ?? 0,
      deadLettered: depth.dead,
      codes: answersByCode(runs),
      paymentCodes: answersByCode(payments),
      longestWaitMs: Math.max(...[...runs, ...payments].map((run) => run.slowestMs)),
      soldWhileRefused,
      heldByBrokerAtLogin: window.heldByBroker,
      paid: money.paid,
      refunded: money.refunded,
      writtenAfterLoginMs: Math.round(writtenAt - window.backAt),
      elapsedMs: Math.round(performance.now() - started),
    });
  });
});
