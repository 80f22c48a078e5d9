import { describe, expect, it } from 'vitest';
import { SoldOutHints } from '../src/inventory/sold-out-hints.js';
import { startTestServer } from './support/server.js';

describe('sold-out hints', () => {
  it('refuse from memory only for their lifetime, and never when switched off', () => {
    let now = 0;
    const hints = new SoldOutHints(250, () => now);
    hints.noteSoldOut('p');
    expect(hints.isSoldOut('p')).toBe(true);
    now = 249;
    expect(hints.isSoldOut('p')).toBe(true);
    now = 250;
    expect(hints.isSoldOut('p')).toBe(false);
    hints.noteSoldOut('p');
    hints.forget('p');
    expect(hints.isSoldOut('p')).toBe(false);
    const off = new SoldOutHints(0, () => now);
    off.noteSoldOut('p');
    expect(off.isSoldOut('p')).toBe(false);
  });

  it('let the next buyer have a unit the moment a hold is cancelled', async () => {
    const t = await startTestServer({ soldOutHintMs: 60_000 });
    try {
      const product = await t.api.createProduct({ stock: 1 });
      const [first, second] = await t.api.createBuyers(2);
      if (!first || !second) throw new Error('no buyers');
      const held = await t.api.purchase(first.token, product.id);
      expect((await t.api.purchase(second.token, product.id)).body).toMatchObject({ code: 'SOLD_OUT', remaining: 0 });
      const orderId = (held.body['order'] as { id: string }).id;
      expect((await t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token: first.token })).status).toBe(200);
      expect((await t.api.purchase(second.token, product.id)).status).toBe(201);
      await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: 1 });
      expect((await t.api.purchase(first.token, product.id)).status).toBe(201);
    } finally {
      await t.stop();
    }
  });
});
