/**
 * Fault drill: the API's broker connection cut in the middle of a keyed storm on `redis-lua`, and
 * the broker left unreachable for a few seconds. The server reaches RabbitMQ through a loopback
 * TCP proxy of this file's own, which the drill severs (every connection through it destroyed, new
 * ones refused) once half the units are confirmed, and restores later. Every buyer is answered
 * `201`, a refusal, or `503` with `Retry-After`, within a bounded time; buyers told to come back
 * retry with the same `Idempotency-Key`, except one in ten, who leave (their units strand). After
 * the drain and a reconcile: nothing oversold, every `201` has its order in PostgreSQL, no buyer
 * has two, the stranded units are back in stock, nothing was dead-lettered, the audit is clean.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pipeline } from '../src/pipeline/pipeline.js';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';
import { TEST_AMQP_URL, type TestServer } from './support/server.js';
import { expectInvariant, storm } from './support/storm.js';
import {
  answersByCode,
  codeOf,
  DRILL_SIZE,
  expectAnsweredWell,
  NO_HANG_MS,
  orderIdOf,
  ordersFound,
  reconcileSettled,
  reportDrill,
  startDrillServer,
  untilAnswered,
  waitFor,
  type BuyerRun,
  type DrillServer,
} from './support/drill.js';

/** How long the broker stays unreachable. */
const CUT_MS = 3_000;

let proxy: TcpProxy;
let drill: DrillServer;
let t: TestServer;
let pipeline: Pipeline;

beforeAll(async () => {
  proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(TEST_AMQP_URL).port || 5672) });
  // Within the file's share of PostgreSQL connections (pg-budget.ts).
  drill = await startDrillServer({ strategy: 'redis-lua', dbPoolSize: 5 }, { amqpPort: proxy.port });
  ({ t, pipeline } = drill);
});
afterAll(async () => {
  await proxy?.restore().catch(() => undefined);
  await drill?.stop();
  await proxy?.close();
});

describe("the API's broker connection cut mid-storm, the broker unreachable for a few seconds", () => {
  it('answers every buyer, and after the drain and a reconcile every 201 has its order, stranded units are back, nothing is dead-lettered', async () => {
    const { buyers: BUYERS, stock: STOCK } = DRILL_SIZE;
    const product = await t.api.createProduct({ stock: STOCK, perBuyerLimit: 1 });
    const buyers = await t.api.createBuyers(BUYERS);
    // Severed once half the units are confirmed.
    let cutAt = 0;
    const outage = (async () => {
      await waitFor('half the units confirmed', () => pipeline.publisher.stats.confirmed >= STOCK / 2, 30_000, 1);
      await proxy.cut();
      cutAt = performance.now();
      // Meanwhile the server says the broker is down.
      await waitFor('/readyz to name the broker', async () => {
        const ready = await t.api.call<{ down?: string[] }>('GET', '/readyz');
        return ready.status === 503 && (ready.body.down ?? []).includes('rabbitmq');
      }, 2_000, 20);
      await sleep(CUT_MS);
      await proxy.restore();
      return performance.now();
    })();
    const buy = (i: number): Promise<BuyerRun> =>
      untilAnswered(() => t.api.purchase(buyers[i]?.token ?? '', product.id, 1, { 'idempotency-key': `cut-${i}` }), {
        walksAway: i % 10 === 0,
      });
    // Half the stock's buyers first; the rest arrive as the broker is cut, with half the units
    // still to sell, so the cut lands mid-storm however fast the machine (with everyone at once,
    // a fast run could sell out before the cut and never meet it).
    const firstWave = storm(STOCK / 2, buy);
    await waitFor('the broker cut', () => cutAt > 0, 30_000, 1);
    const secondWave = storm(BUYERS - STOCK / 2, (i) => buy(STOCK / 2 + i));
    const runs = [...(await firstWave), ...(await secondWave)];
    const backAt = await outage;

    expectAnsweredWell(runs, NO_HANG_MS);
    // The cut came mid-storm: some buyers were told to come back.
    const codes = answersByCode(runs);
    expect((codes['503 STORE_UNAVAILABLE'] ?? 0) + (codes['503 OUTCOME_UNKNOWN'] ?? 0)).toBeGreaterThan(0);
    const finals = runs.filter((run) => !run.walkedAway).map((run) => (run.final ? codeOf(run.final) : 'none'));
    expect(finals.filter((code) => code !== '201' && code !== '409 SOLD_OUT')).toEqual([]);
    const won = runs.flatMap((run, i) => (run.final?.status === 201 ? [{ i, orderId: orderIdOf(run.final) }] : []));
    expect(won.length).toBeLessThanOrEqual(STOCK);

    // The pipeline drains (the consumer's connection came back too), then the units of the buyers
    // who left are returned: their holds are older than the confirm timeout and have no order.
    await waitFor('the pipeline drained', () => pipeline.drained(), 30_000);
    const drift = (await reconcileSettled(t)).products.find((p) => p.productId === product.id);
    expect(drift).toBeDefined();
    expect(drift?.returned).toBe(drift?.stranded);
    expect(drift?.unitsNotInPostgres).toBe(0);
    const depth = await pipeline.broker.depth();
    expect(depth).toMatchObject({ placed: 0, dead: 0 });
    expect(pipeline.consumer?.stats).toMatchObject({ failed: 0, abandoned: 0, rejected: { unsigned: 0, forged: 0, malformed: 0 } });

    // Every 201 has its order; the orders in PostgreSQL are the winners' and, at most, those of
    // buyers who left after an OUTCOME_UNKNOWN whose publish did land; one per buyer.
    await expectInvariant(
      t.api,
      product.id,
      runs.flatMap((run) => (run.final ? [run.final] : [])),
    );
    const orders = t.server.system.stores.databases.orders;
    const rows = await orders<{ id: string; buyer_id: string }[]>`select id, buyer_id from orders where product_id = ${product.id}`;
    const buyerIndex = new Map(buyers.map((buyer, i) => [buyer.id, i]));
    const winners = new Set(won.map((w) => w.orderId));
    expect(rows.filter((row) => !winners.has(row.id) && (buyerIndex.get(row.buyer_id) ?? 1) % 10 !== 0)).toEqual([]);
    expect(new Set(rows.map((row) => row.buyer_id)).size).toBe(rows.length);
    const audit = await t.api.audit(product.id);

    await reportDrill({
      drill: 'broker-cut',
      strategy: 'redis-lua',
      buyers: BUYERS,
      stock: STOCK,
      answered2xx: won.length,
      ordersFound: await ordersFound(t.api, [...winners]),
      oversold: audit.products[0]?.oversold ?? 0,
      stranded: drift?.stranded ?? 0,
      returned: drift?.returned ?? 0,
      deadLettered: depth.dead,
      codes,
      longestWaitMs: Math.max(...runs.map((run: BuyerRun) => run.slowestMs)),
      cutMs: Math.round(backAt - cutAt),
      walkedAway: runs.filter((run) => run.walkedAway).length,
      ordersOfBuyersWhoLeft: rows.length - won.length,
      attemptsPerBuyer: Math.max(...runs.map((run) => run.answers.length)),
    });
  });
});
