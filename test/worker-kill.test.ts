/**
 * Fault drill: the order pipeline's consumer killed with SIGKILL in the middle of a drain, and
 * started again. The API runs without a worker (`WORKER=false`); the consumer runs as its own
 * process (`flashsale worker`), as it would in production. Orders confirmed while no consumer runs
 * wait in the queue; the first worker is killed once it has written some of them (its unacked
 * messages go back to the queue); a second one finishes. Every `201` ends in PostgreSQL exactly
 * once, and the audit is clean.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { ordersFound, reconcileSettled, reportDrill, startDrillServer, type DrillServer } from './support/drill.js';
import { envOf, startFlashsale, stopAll, type FlashsaleProcess } from './support/flashsale-process.js';
import { TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

let drill: DrillServer;
let t: TestServer;
let orders: Sql;

beforeAll(async () => {
  drill = await startDrillServer({ strategy: 'redis-lua', worker: false });
  t = drill.t;
  orders = connect(databaseUrl(TEST_DATABASE_URL, `${t.config.databasePrefix}orders`), 1, 'flashsale:worker-kill-test');
});
afterAll(async () => {
  await stopAll();
  await orders?.end();
  await drill?.stop();
});

/** `flashsale worker` on this test server's databases, keys and queues; resolves once it consumes. */
const startWorker = (): Promise<FlashsaleProcess> => startFlashsale('worker', envOf(t.config), 'flashsale worker:');

async function ordersOf(productId: string): Promise<number> {
  const [row] = await orders<{ count: number }[]>`select count(*)::int as count from orders where product_id = ${productId}`;
  return row?.count ?? 0;
}

describe('the consumer killed with SIGKILL mid-drain', () => {
  it('ends with every 201 in PostgreSQL exactly once when a worker starts again', async () => {
    const product = await t.api.createProduct({ stock: 1_500 });
    const buyers = await t.api.createBuyers(2_000);
    // No consumer: every confirmed order waits in the queue.
    let longestWaitMs = 0;
    const answers = await storm(2_000, async (i) => {
      const started = performance.now();
      const answer = await t.api.purchase((buyers[i] as { token: string }).token, product.id);
      longestWaitMs = Math.max(longestWaitMs, performance.now() - started);
      return answer;
    });
    expect(tally(answers)).toEqual({ '201': 1_500, '409 SOLD_OUT': 500 });
    expect(await ordersOf(product.id)).toBe(0);

    const first = await startWorker();
    // Killed as soon as it has written some, before it has written all.
    for (let waited = 0; (await ordersOf(product.id)) === 0; waited += 5) {
      if (waited > 30_000) throw new Error('the first worker wrote nothing');
      await sleep(5);
    }
    await first.stop('SIGKILL');
    const written = await ordersOf(product.id);
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(1_500);

    const second = await startWorker();
    for (let waited = 0; (await ordersOf(product.id)) < 1_500; waited += 50) {
      if (waited > 60_000) throw new Error(`the second worker did not finish: ${await ordersOf(product.id)} of 1,500`);
      await sleep(50);
    }
    await second.stop();

    // Exactly once: as many orders as 201s, each 201's id among them (the audit checks units too).
    expect(await ordersOf(product.id)).toBe(1_500);
    await expectInvariant(t.api, product.id, answers);
    const deadLettered = (await drill.pipeline.broker.depth()).dead;
    expect(deadLettered).toBe(0);
    // No hold of the gate is without its order: the kill stranded nothing, it only redelivered.
    const drift = (await reconcileSettled(t)).products.find((p) => p.productId === product.id);
    expect(drift).toMatchObject({ stranded: 0, unitsNotInPostgres: 0 });
    const audit = await t.api.audit(product.id);
    const won = answers.filter((answer) => answer.status === 201).map((answer) => (answer.body['order'] as { id: string }).id);
    await reportDrill({
      drill: 'worker-kill',
      strategy: 'redis-lua',
      buyers: 2_000,
      stock: 1_500,
      answered2xx: won.length,
      ordersFound: await ordersFound(t.api, won),
      oversold: audit.products[0]?.oversold ?? 0,
      stranded: drift?.stranded ?? 0,
      returned: drift?.returned ?? 0,
      deadLettered,
      codes: tally(answers),
      longestWaitMs,
      writtenByTheKilledWorker: written,
    });
  });
});
