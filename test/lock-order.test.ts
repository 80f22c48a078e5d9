/**
 * One buyer reserving and cancelling on the same limited product at the same instant: every
 * stock step takes the product row before the buyer's row (event-sourced: the allocation's row,
 * then the stream's next number, then the product row), so PostgreSQL never has to break a
 * deadlock (which would reach the buyer as a 500).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';
import { expectInvariant, tally } from './support/storm.js';
import type { Answer } from './support/api.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

describe.each(['atomic', 'pessimistic', 'optimistic', 'event-sourced'])('%s: one buyer reserving while cancelling', (strategy) => {
  it('never deadlocks and never leaves the buyer over the limit', async () => {
    const product = await t.api.createProduct({ stock: 1000, perBuyerLimit: 2, strategy });
    const buyers = await t.api.createBuyers(20);
    const answers: Answer[] = [];
    for (let round = 0; round < 5; round += 1) {
      const held = await Promise.all(buyers.map((b) => t.api.purchase(b.token, product.id)));
      answers.push(...held);
      // Each buyer cancels its hold while firing two more purchases at the same moment.
      const raced = await Promise.all(
        buyers.flatMap((buyer, i) => {
          const order = held[i]?.body['order'] as { id: string } | undefined;
          const cancel = order
            ? [t.api.call('POST', `/v1/orders/${order.id}/cancel`, { token: buyer.token })]
            : [];
          return [...cancel, t.api.purchase(buyer.token, product.id), t.api.purchase(buyer.token, product.id)];
        }),
      );
      answers.push(...raced);
    }
    const counts = tally(answers);
    expect(Object.keys(counts).filter((key) => key.startsWith('5'))).toEqual([]);
    await expectInvariant(t.api, product.id, answers);
  });
});
