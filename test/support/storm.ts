/** Helpers for concurrency tests: fire many requests at once, then check the invariant. */
import { expect } from 'vitest';
import type { Answer, Api } from './api.js';

/** Starts all `count` calls before awaiting any, so they are in flight together. */
export async function storm<T>(count: number, call: (index: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: count }, (_, index) => call(index)));
}

/** Answers grouped by `status code` (e.g. `201`, `409 SOLD_OUT`). */
export function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const answer of answers) {
    const code = typeof answer.body['code'] === 'string' ? ` ${answer.body['code']}` : '';
    const key = `${answer.status}${code}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/**
 * The invariant after a storm, from the stores: the audit is clean (stocked = held + paid +
 * remaining, no buyer over the limit, no order without its units), and every 201 has its order.
 */
export async function expectInvariant(api: Api, productId: string, answers: readonly Answer[]): Promise<void> {
  const audit = await api.audit(productId);
  expect(audit.violations).toEqual([]);
  expect(audit.ok).toBe(true);
  const [product] = audit.products;
  expect(product).toBeDefined();
  if (!product) return;
  expect(product.held + product.paid + product.remaining).toBe(product.stocked);

  const orderIds = answers
    .filter((answer) => answer.status === 201)
    .map((answer) => (answer.body['order'] as { id: string }).id);
  const missing = await api.admin<{ missing: string[] }>('POST', '/v1/admin/orders/missing', { ids: orderIds });
  expect(missing.status).toBe(200);
  expect(missing.body.missing).toEqual([]);
}
