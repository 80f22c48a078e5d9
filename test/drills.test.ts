/**
 * Fault drill: Redis restarted (killed and started again, empty) in the middle of a 2,000-buyer
 * storm on 100 units, on a private `redis-server` of this file's own, for both Redis strategies.
 * Every buyer gets an answer: a `201`, a refusal, or a `503` with `Retry-After` (never a `500`);
 * buyers told to come back retry until they get a definitive answer. After it: nothing oversold,
 * every `201` has its order in PostgreSQL, the audit is clean (for `redis-lua`, after the pipeline
 * drained, with the gate rebuilt from PostgreSQL and agreeing with it).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer } from './support/api.js';
import { startPrivateRedis, type PrivateRedis } from './support/redis-server.js';
import { startTestServer, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant } from './support/storm.js';

const BUYERS = 2_000;
const STOCK = 100;

let redis: PrivateRedis;
let t: TestServer;

beforeAll(async () => {
  redis = await startPrivateRedis();
  t = await startTestServer({
    ...withPipeline(),
    redisUrl: redis.url,
    // Short, so the rebuild after the restart comes within the test's time.
    confirmTimeoutMs: 1_000,
    reconcileIntervalMs: 3_600_000,
  });
});
afterAll(async () => {
  await t?.stop();
  await redis?.stop();
});

describe.each(['redis-lua', 'redis-lock'] as const)('Redis restarted in the middle of a storm, on %s', (strategy) => {
  it('never oversells, never answers 500, and every 201 has its order', async () => {
    const product = await t.api.createProduct({ stock: STOCK, strategy });
    const buyers = await t.api.createBuyers(BUYERS);
    let answered = 0;
    let restarted: Promise<void> | undefined;
    const first = await Promise.all(
      buyers.map(async (buyer) => {
        const answer = await t.api.purchase(buyer.token, product.id);
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
          if (again(answer)) final[i] = await t.api.purchase((buyers[i] as { token: string }).token, product.id);
        }),
      );
    }
    expect(final.filter(again)).toEqual([]);
    const sold = final.filter((answer) => answer.status === 201).length;
    expect(sold).toBeLessThanOrEqual(STOCK);
    await expectInvariant(t.api, product.id, final);
    const audit = await t.api.audit(product.id);
    expect(audit.products[0]).toMatchObject({ stocked: STOCK, oversold: 0 });
  });
});
