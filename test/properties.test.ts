/**
 * Property tests (fast-check): generated purchase sequences against a real server on `atomic`,
 * `queue` and `redis-lua`. Each run makes a product (stock, a per-buyer limit or none), a few
 * buyers, and waves of concurrent purchases: product ids in any spelling, quantities up to past
 * the limit, `Idempotency-Key`s shared, repeated and reused with another body, instant payments,
 * retries of the same request. After every run, from the stores: nothing oversold, no buyer over
 * the limit, every `201` has its order, a key gives one order, the audit clean.
 *
 * `FC_RUNS` sets the runs per strategy (default 100, as CI runs them); a failure prints the seed and
 * path to replay it: `FC_SEED=<seed> FC_PATH=<path> npx vitest run test/properties.test.ts`.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StrategyName } from '../src/inventory/strategy-names.js';
import type { Answer } from './support/api.js';
import { startTestServer, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant } from './support/storm.js';

const RUNS = Number(process.env['FC_RUNS'] ?? 100);
const SEED = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
const PATH = process.env['FC_PATH'];
const STRATEGIES: readonly StrategyName[] = ['atomic', 'queue', 'redis-lua'];
const PRICE = 100;

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer(withPipeline());
});
afterAll(async () => {
  await t?.stop();
});

/** One purchase as a client sends it. */
interface Purchase {
  readonly buyer: number;
  readonly quantity: number;
  /** How the product id is spelled: as minted, upper case, or mixed. */
  readonly spelling: 0 | 1 | 2;
  /** An `Idempotency-Key` out of a few, so keys are shared, repeated and reused with another body. */
  readonly key: number | null;
  readonly pay: boolean;
  /** How many more times the very same request is sent, at once. */
  readonly repeats: number;
}

interface Scenario {
  readonly stock: number;
  readonly limit: number | null;
  readonly buyers: number;
  readonly waves: readonly (readonly Purchase[])[];
}

const purchase = (buyers: number): fc.Arbitrary<Purchase> =>
  fc.record({
    buyer: fc.integer({ min: 0, max: buyers - 1 }),
    quantity: fc.integer({ min: 1, max: 4 }),
    spelling: fc.constantFrom(0 as const, 1 as const, 2 as const),
    key: fc.option(fc.integer({ min: 0, max: 3 }), { nil: null }),
    pay: fc.boolean(),
    repeats: fc.integer({ min: 0, max: 2 }),
  });

const scenario: fc.Arbitrary<Scenario> = fc
  .record({ stock: fc.integer({ min: 1, max: 8 }), limit: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }), buyers: fc.integer({ min: 1, max: 4 }) })
  .chain(({ stock, limit, buyers }) =>
    fc.record({
      stock: fc.constant(stock),
      limit: fc.constant(limit),
      buyers: fc.constant(buyers),
      waves: fc.array(fc.array(purchase(buyers), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 }),
    }),
  );

function spell(id: string, spelling: Purchase['spelling']): string {
  if (spelling === 1) return id.toUpperCase();
  if (spelling === 2) return [...id].map((c, i) => (i % 2 === 0 ? c.toUpperCase() : c)).join('');
  return id;
}

/** What each answer says: a status the buyer can act on, never a 500. */
const ANSWERS = new Set([201, 402, 409, 410, 422, 429, 503]);

async function run(strategy: StrategyName, plan: Scenario): Promise<void> {
  const product = await t.api.createProduct({ stock: plan.stock, perBuyerLimit: plan.limit, priceCents: PRICE, strategy });
  const buyers = await t.api.createBuyers(plan.buyers, 100 * PRICE);
  const answers: { readonly request: Purchase; readonly answer: Answer }[] = [];
  for (const wave of plan.waves) {
    const sent = wave.flatMap((request) => Array.from({ length: request.repeats + 1 }, () => request));
    const got = await Promise.all(
      sent.map(async (request) => {
        const buyer = buyers[request.buyer];
        if (!buyer) throw new Error(`no buyer ${request.buyer}`);
        const headers: Record<string, string> = request.key === null ? {} : { 'idempotency-key': `key-${request.key}` };
        const answer = await t.api.call('POST', '/v1/purchases', {
          token: buyer.token,
          body: { productId: spell(product.id, request.spelling), quantity: request.quantity, ...(request.pay ? { pay: true } : {}) },
          headers,
        });
        return { request, answer };
      }),
    );
    answers.push(...got);
  }
  for (const { answer } of answers) expect(ANSWERS, JSON.stringify(answer.body)).toContain(answer.status);
  const created = answers.filter(({ answer }) => answer.status === 201);
  for (const { answer } of created) expect((answer.body['order'] as { productId: string }).productId).toBe(product.id);

  // One key, one request, one order: every 201 under a buyer's key names the same order.
  const orderOfKey = new Map<string, string>();
  for (const { request, answer } of created) {
    if (request.key === null) continue;
    const id = `${request.buyer}/${request.key}`;
    const orderId = (answer.body['order'] as { id: string }).id;
    expect(orderOfKey.get(id) ?? orderId, `key ${id} answered two orders`).toBe(orderId);
    orderOfKey.set(id, orderId);
  }
  // Nothing oversold and no buyer over the limit, counted from the distinct orders the buyers were told of.
  const units = new Map<string, { buyer: number; quantity: number }>();
  for (const { request, answer } of created) {
    const order = answer.body['order'] as { id: string; quantity: number };
    units.set(order.id, { buyer: request.buyer, quantity: order.quantity });
  }
  expect([...units.values()].reduce((sum, order) => sum + order.quantity, 0)).toBeLessThanOrEqual(plan.stock);
  if (plan.limit !== null) {
    for (let buyer = 0; buyer < plan.buyers; buyer += 1) {
      const mine = [...units.values()].filter((order) => order.buyer === buyer).reduce((sum, order) => sum + order.quantity, 0);
      expect(mine).toBeLessThanOrEqual(plan.limit);
    }
  }
  await expectInvariant(t.api, product.id, created.map(({ answer }) => answer));
}

describe('generated purchase sequences', () => {
  for (const strategy of STRATEGIES) {
    it(`keep every invariant on ${strategy}`, async () => {
      await fc.assert(
        fc.asyncProperty(scenario, (plan) => run(strategy, plan)),
        { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }), ...(PATH === undefined ? {} : { path: PATH }), endOnFailure: true },
      );
    });
  }
});
