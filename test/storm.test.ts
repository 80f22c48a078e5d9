import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

describe('storms on the atomic strategy', () => {
  it('never sells more than the stock when 500 buyers race for 50 units', async () => {
    const product = await t.api.createProduct({ stock: 50 });
    const buyers = await t.api.createBuyers(500);
    const answers = await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id));

    expect(tally(answers)).toEqual({ '201': 50, '409 SOLD_OUT': 450 });
    await expectInvariant(t.api, product.id, answers);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ stocked: 50, held: 50, remaining: 0 });
  });

  it('gives one buyer firing 100 purchases at once exactly the limit of 2', async () => {
    const product = await t.api.createProduct({ stock: 100, perBuyerLimit: 2 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const answers = await storm(100, () => t.api.purchase(buyer.token, product.id));

    expect(tally(answers)).toEqual({ '201': 2, '409 LIMIT_EXCEEDED': 98 });
    await expectInvariant(t.api, product.id, answers);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 2, remaining: 98 });
  });
});
