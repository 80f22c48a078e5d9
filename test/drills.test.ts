/**
 * Fault drill: Redis restarted (killed and started again, empty) in the middle of a storm (2,000
 * buyers on 100 units with `DRILL_SCALE=full`; smaller by default, see `support/drill.ts`), on a
 * private `redis-server` of this file's own, for both Redis strategies; and on `redis-lua` with the
 * order consumer in a `flashsale worker` process of its own.
 * Every buyer gets an answer: a `201`, a refusal, or a `503` with `Retry-After` (never a `500`);
 * buyers told to come back retry until they get a definitive answer. After it: nothing oversold,
 * every `201` has its order in PostgreSQL, the audit is clean (for `redis-lua`, after the pipeline
 * drained, with the gate rebuilt from PostgreSQL and agreeing with it).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer } from './support/api.js';
import { DRILL_SIZE, ordersFound, reconcileSettled, reportDrill, startDrillServer, tallyInto, waitFor, type DrillServer } from './support/drill.js';
import { envOf, startFlashsale, stopAll } from './support/flashsale-process.js';
import { expectInvariant } from './support/storm.js';

const { buyers: BUYERS, stock: STOCK } = DRILL_SIZE;
let drill: DrillServer;

beforeAll(async () => {
  drill = await startDrillServer();
});
afterAll(async () => {
  await drill?.stop();
});

/**
 * Drill 1 on `server`: `BUYERS` buyers (no `Idempotency-Key`) at once on `STOCK` units; Redis
 * killed and started again, empty, at the 30th answer; those told to come back (`503`,
 * `CONTENTION`) try again every 100 ms until answered for good. Then the invariant.
 */
async function restartRedisMidStorm(server: DrillServer, strategy: 'redis-lua' | 'redis-lock', name: string): Promise<void> {
  const { t, redis } = server;
  const product = await t.api.createProduct({ stock: STOCK, strategy });
  const buyers = await t.api.createBuyers(BUYERS);
  // Every answer of every attempt, by code, and the longest any attempt waited.
  const codes: Record<string, number> = {};
  let longestWaitMs = 0;
  const purchase = async (token: string): Promise<Answer> => {
    const started = performance.now();
    const answer = await t.api.purchase(token, product.id);
    longestWaitMs = Math.max(longestWaitMs, performance.now() - started);
    tallyInto(codes, answer);
    return answer;
  };
  let answered = 0;
  let restarted: Promise<void> | undefined;
  const first = await Promise.all(
    buyers.map(async (buyer) => {
      const answer = await purchase(buyer.token);
      answered += 1;
      if (answered === 30) restarted = redis.restart();
      return answer;
    }),
  );
  await restarted;
  // The restart came mid-storm: some buyers were told to come back.
  expect(first.some((answer) => answer.status === 503)).toBe(true);
  for (const answer of first) {
    expect([201, 409, 503], JSON.stringify(answer.body)).toContain(answer.status);
    if (answer.status === 503) expect(answer.headers['retry-after']).toBeDefined();
  }
  // Buyers told to come back (503) or to retry (CONTENTION) do so until they are answered for good.
  const final: Answer[] = [...first];
  const again = (answer: Answer): boolean => answer.status === 503 || answer.body['code'] === 'CONTENTION';
  for (let round = 0; round < 150 && final.some(again); round++) {
    await sleep(100);
    await Promise.all(
      final.map(async (answer, i) => {
        if (again(answer)) final[i] = await purchase((buyers[i] as { token: string }).token);
      }),
    );
  }
  expect(final.filter(again)).toEqual([]);
  const sold = final.filter((answer) => answer.status === 201).length;
  expect(sold).toBeLessThanOrEqual(STOCK);
  // Every 201's order written (by whichever process consumes), then the invariant.
  await waitFor('the pipeline drained', () => server.pipeline.drained(), 30_000, 100);
  await expectInvariant(t.api, product.id, final);
  const audit = await t.api.audit(product.id);
  expect(audit.products[0]).toMatchObject({ stocked: STOCK, oversold: 0 });
  // Nothing dead-lettered; on redis-lua, no hold of the rebuilt gate is without its order.
  const deadLettered = (await server.pipeline.broker.depth()).dead;
  expect(deadLettered).toBe(0);
  let drift = { stranded: 0, returned: 0 };
  if (strategy === 'redis-lua') {
    const found = (await reconcileSettled(t)).products.find((p) => p.productId === product.id);
    expect(found).toMatchObject({ unitsNotInPostgres: 0 });
    drift = { stranded: found?.stranded ?? 0, returned: found?.returned ?? 0 };
  }
  const won = final.filter((answer) => answer.status === 201).map((answer) => (answer.body['order'] as { id: string }).id);
  await reportDrill({
    drill: name,
    strategy,
    buyers: BUYERS,
    stock: STOCK,
    answered2xx: won.length,
    ordersFound: await ordersFound(t.api, won),
    oversold: audit.products[0]?.oversold ?? 0,
    ...drift,
    deadLettered,
    codes,
    longestWaitMs,
  });
}

describe.each(['redis-lua', 'redis-lock'] as const)('Redis restarted in the middle of a storm, on %s', (strategy) => {
  it('never oversells, never answers 500, and every 201 has its order', async () => {
    await restartRedisMidStorm(drill, strategy, 'redis-restart');
  });
});

describe('Redis restarted in the middle of a storm, the consumer in a process of its own', () => {
  let apart: DrillServer;
  beforeAll(async () => {
    // The API writes no order; a `flashsale worker` does, so the rebuild after the restart must
    // wait for batches that only the worker's process holds (the drain barrier).
    // Small pools: the file's first drill server and the worker's pools share the file's PostgreSQL budget (pg-budget.ts).
    apart = await startDrillServer({ worker: false, dbPoolSize: 2 });
    await startFlashsale('worker', envOf(apart.t.config), 'flashsale worker:');
  });
  afterAll(async () => {
    await stopAll();
    await apart?.stop();
  });

  it('never oversells, never answers 500, and every 201 has its order, on redis-lua', async () => {
    await restartRedisMidStorm(apart, 'redis-lua', 'redis-restart-worker-apart');
  });
});
