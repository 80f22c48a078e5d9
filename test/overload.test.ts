import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

let t: TestServer;
beforeAll(async () => {
  // A tiny in-flight limit, so a modest storm is certain to cross it.
  t = await startTestServer({ maxInFlight: 4 });
});
afterAll(async () => {
  await t?.stop();
});

describe('beyond the in-flight limit', () => {
  it('answers 503 OVERLOADED with Retry-After at once, and loses nothing', async () => {
    const product = await t.api.createProduct({ stock: 1000 });
    const buyers = await t.api.createBuyers(300);
    const answers = await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id));

    const counts = tally(answers);
    expect(Object.keys(counts).sort()).toEqual(['201', '503 OVERLOADED']);
    expect(counts['503 OVERLOADED']).toBeGreaterThan(0);
    for (const answer of answers.filter((a) => a.status === 503)) {
      expect(answer.headers['retry-after']).toBe('1');
    }
    await expectInvariant(t.api, product.id, answers);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: counts['201'], remaining: 1000 - (counts['201'] ?? 0) });
  });
});
