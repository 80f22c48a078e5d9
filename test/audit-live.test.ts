/**
 * The audit while a sale is on: read continuously during a storm (purchases, payments and cancels
 * at once), it never reports a violation on a safe strategy, because it reads inventory's figures
 * in one statement, then the allocations and the orders page by page (an order's allocation read
 * after the order), and leaves orders newer than the figures to the next read. It still catches
 * `naive`'s oversell.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StrategyName } from '../src/inventory/strategy-names.js';
import type { Answer } from './support/api.js';
import { startTestServer, type TestServer } from './support/server.js';
import { storm } from './support/storm.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ naiveGapMs: 25 });
});
afterAll(async () => {
  await t?.stop();
});

interface AuditBody {
  ok: boolean;
  violations: { kind: string }[];
}

/** Audits `productId` again and again until `done` settles; returns every report. */
async function auditWhile(productId: string, done: Promise<unknown>): Promise<AuditBody[]> {
  const reports: AuditBody[] = [];
  let finished = false;
  void done.finally(() => {
    finished = true;
  });
  // Two auditors at once, so reads land all through the storm.
  await Promise.all(
    [0, 1].map(async () => {
      while (!finished) {
        const audit = await t.api.admin<AuditBody>('GET', `/v1/admin/audit?productId=${productId}`);
        expect(audit.status).toBe(200);
        reports.push(audit.body);
      }
    }),
  );
  return reports;
}

/** 600 buyers each buy one unit of 400; a third of the winners pay, a third cancel. */
async function sale(strategy: StrategyName): Promise<{ productId: string; reports: AuditBody[] }> {
  const product = await t.api.createProduct({ stock: 400, strategy });
  const buyers = await t.api.createBuyers(600);
  const work = storm(buyers.length, async (i) => {
    const token = buyers[i]?.token ?? '';
    const bought: Answer = await t.api.purchase(token, product.id);
    const id = (bought.body['order'] as { id: string } | undefined)?.id;
    if (bought.status !== 201 || id === undefined) return;
    if (i % 3 === 0) await t.api.call('POST', `/v1/orders/${id}/pay`, { token });
    if (i % 3 === 1) await t.api.call('POST', `/v1/orders/${id}/cancel`, { token });
  });
  const reports = await auditWhile(product.id, work);
  await work;
  return { productId: product.id, reports };
}

describe('the audit read while a sale is on', () => {
  for (const strategy of ['atomic', 'pessimistic'] as const) {
    it(`never reports a violation on ${strategy}`, async () => {
      const { reports } = await sale(strategy);
      expect(reports.length).toBeGreaterThan(3);
      expect(reports.flatMap((report) => report.violations)).toEqual([]);
    });
  }

  it("still catches naive's oversell", async () => {
    const product = await t.api.createProduct({ stock: 5, strategy: 'naive' });
    const buyers = await t.api.createBuyers(100);
    await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id));
    const audit = await t.api.admin<AuditBody>('GET', `/v1/admin/audit?productId=${product.id}`);
    expect(audit.body.ok).toBe(false);
    expect(audit.body.violations.map((violation) => violation.kind)).toEqual(expect.arrayContaining(['OVERSOLD']));
  });
});
