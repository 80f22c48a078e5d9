/**
 * Whoever reaches the broker can publish to the install's placed-orders queue: the consumer writes
 * only what a process of this install signed, re-checks what no grant of the gate can differ in,
 * and gives up (voids, units back) a genuine order it can never write. Each attack ends with the
 * stores unchanged: no order, no key row, no hold, balances as they were, the audit clean.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Connection, type Publisher } from 'rabbitmq-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyedOrderId, requestHash } from '../src/orders/idempotency.js';
import { queueNames } from '../src/pipeline/broker.js';
import type { ConsumerCounts } from '../src/pipeline/consumer.js';
import { MessageSigner, SIGNATURE_HEADER, SIGNED_CONTENT_TYPE } from '../src/pipeline/message-signature.js';
import { placedOrdersBody, type PlacedOrder } from '../src/pipeline/order-events.js';
import type { Pipeline } from '../src/pipeline/pipeline.js';
import type { Answer } from './support/api.js';
import { waitFor } from './support/drill.js';
import { startTestServer, TEST_AMQP_URL, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

const CONFIRM_TIMEOUT_MS = 1_000;

let t: TestServer;
let pipeline: Pipeline;
let broker: Connection;
let raw: Publisher;
let signer: MessageSigner;

beforeAll(async () => {
  t = await startTestServer({ ...withPipeline(), confirmTimeoutMs: CONFIRM_TIMEOUT_MS, reconcileIntervalMs: 3_600_000 });
  const opened = t.server.system.pipeline;
  if (!opened) throw new Error('the test server has no pipeline');
  pipeline = opened;
  // The install's secret, as a process of the install reads it (it is kept under the data directory).
  signer = new MessageSigner((await readFile(join(t.config.dataDir, 'pipeline-secret'), 'utf8')).trim());
  broker = new Connection(t.config.amqpUrl ?? TEST_AMQP_URL);
  raw = broker.createPublisher({ confirm: true });
});
afterAll(async () => {
  await raw?.close();
  await broker?.close();
  await t?.stop();
});

const placedQueueName = (): string => queueNames(t.config.queuePrefix).placed;

/** Publishes straight to the install's queue, as any client with the broker's credentials can. */
async function publishRaw(body: Buffer | object, properties: { contentType?: string; headers?: Record<string, string> } = {}): Promise<void> {
  await raw.send({ routingKey: placedQueueName(), durable: true, ...properties }, body);
}

const consumerStats = (): ConsumerCounts => {
  const stats = pipeline.consumer?.stats;
  if (!stats) throw new Error('no consumer');
  return stats;
};

async function deadLetters(): Promise<number> {
  return (await pipeline.broker.depth()).dead;
}

interface Scene {
  readonly productId: string;
  readonly buyer: { id: string; token: string };
}

/** A product (limit 2, price 1,000) and a buyer with no money: what an attacker wants to hold. */
async function scene(strategy: 'atomic' | 'redis-lua'): Promise<Scene> {
  const product = await t.api.createProduct({ stock: 10, perBuyerLimit: 2, priceCents: 1_000, strategy });
  const [buyer] = await t.api.createBuyers(1, 0);
  if (!buyer) throw new Error('no buyer');
  return { productId: product.id, buyer };
}

/** The forged order: three units over a limit of two, for nothing, held for a year, under a key. */
function forgedOrder(at: Scene, orderId: string): PlacedOrder {
  const now = Date.now();
  return {
    orderId,
    productId: at.productId,
    buyerId: at.buyer.id,
    quantity: 3,
    amountCents: 0,
    expiresAt: new Date(now + 365 * 86_400_000).toISOString(),
    placedAt: new Date(now).toISOString(),
    key: { key: 'forged-key', claimId: '01900000-0000-7000-8000-0000000000c1', scope: 'purchase', hash: 'h', answered: true },
  };
}

/** Nothing of the attack is in any store: no order, no hold, no key row, stock and balance as they were. */
async function expectUntouched(at: Scene, orderIds: readonly string[]): Promise<void> {
  const { databases } = t.server.system.stores;
  const orders = await databases.orders`select id from orders where id = any(${databases.orders.array([...orderIds])}::uuid[])`;
  expect(orders).toHaveLength(0);
  const keys = await databases.orders`select key from idempotency_keys where buyer_id = ${at.buyer.id}`;
  expect(keys).toHaveLength(0);
  const holds = await databases.inventory`select id from allocations where product_id = ${at.productId}`;
  expect(holds).toHaveLength(0);
  const product = await t.api.call<{ remaining: number }>('GET', `/v1/products/${at.productId}`);
  expect(product.body.remaining).toBe(10);
  const me = await t.api.call<{ balanceCents: number; orders: unknown[] }>('GET', '/v1/me', { token: at.buyer.token });
  expect(me.body.balanceCents).toBe(0);
  expect(me.body.orders).toHaveLength(0);
  const audit = await t.api.audit(at.productId);
  expect(audit.violations).toEqual([]);
}

async function metric(name: string): Promise<string[]> {
  const answer = await t.api.call('GET', '/metrics');
  return String(answer.body).split('\n').filter((line) => line.startsWith(name));
}

describe('a message the install did not sign', () => {
  for (const strategy of ['atomic', 'redis-lua'] as const) {
    it(`is dead-lettered unread on ${strategy}: unsigned, signed with another secret, or altered after signing`, async () => {
      const at = await scene(strategy);
      const ids = ['01900000-0000-7000-8000-0000000000d1', '01900000-0000-7000-8000-0000000000d2', '01900000-0000-7000-8000-0000000000d3'];
      const before = { ...consumerStats().rejected };
      const dead = await deadLetters();
      // As published before messages were signed: plain JSON, no signature.
      await publishRaw({ orders: [forgedOrder(at, ids[0] ?? '')] });
      // Signed, but with a secret of the attacker's.
      const other = placedOrdersBody([forgedOrder(at, ids[1] ?? '')]);
      await publishRaw(other, { contentType: SIGNED_CONTENT_TYPE, headers: { [SIGNATURE_HEADER]: new MessageSigner('x'.repeat(32)).sign(other) } });
      // A genuine signature over a body that was changed afterwards (quantity 1 → 3).
      const genuine = { ...forgedOrder(at, ids[2] ?? ''), quantity: 1 };
      const signature = signer.sign(placedOrdersBody([genuine]));
      await publishRaw(placedOrdersBody([{ ...genuine, quantity: 3 }]), { contentType: SIGNED_CONTENT_TYPE, headers: { [SIGNATURE_HEADER]: signature } });
      await waitFor('the three messages refused', () => consumerStats().rejected.unsigned + consumerStats().rejected.forged >= before.unsigned + before.forged + 3);
      expect(consumerStats().rejected).toMatchObject({ unsigned: before.unsigned + 1, forged: before.forged + 2 });
      await waitFor('the three messages dead-lettered', async () => (await deadLetters()) >= dead + 3);
      await expectUntouched(at, ids);
      expect(await metric('flashsale_consumer_messages_rejected_total{reason="forged"}')).toEqual([
        `flashsale_consumer_messages_rejected_total{reason="forged"} ${before.forged + 2}`,
      ]);
    });
  }

  it('is dead-lettered when it is signed but not placed orders (a field out of form)', async () => {
    const at = await scene('redis-lua');
    const before = consumerStats().rejected.malformed;
    const id = '01900000-0000-7000-8000-0000000000d4';
    for (const bad of [{ quantity: 0 }, { productId: at.productId.toUpperCase() }, { expiresAt: 'tomorrow' }, { amountCents: -1 }]) {
      const body = placedOrdersBody([{ ...forgedOrder(at, id), ...bad }]);
      await publishRaw(body, { contentType: SIGNED_CONTENT_TYPE, headers: { [SIGNATURE_HEADER]: signer.sign(body) } });
    }
    await waitFor('the messages refused', () => consumerStats().rejected.malformed >= before + 4);
    await expectUntouched(at, [id]);
  });
});

describe('a signed message whose order no grant of the gate can be', () => {
  it('is refused by the checks that write it, and changes no stock, key or balance', async () => {
    const onAtomic = await scene('atomic');
    const onGate = await scene('redis-lua');
    const abandoned = consumerStats().abandoned;
    const now = Date.now();
    const base = (at: Scene, orderId: string): PlacedOrder => ({
      orderId,
      productId: at.productId,
      buyerId: at.buyer.id,
      quantity: 1,
      amountCents: 1_000,
      expiresAt: new Date(now + 60_000).toISOString(),
      placedAt: new Date(now).toISOString(),
    });
    const cases: PlacedOrder[] = [
      // A product the gate does not sell.
      base(onAtomic, '01900000-0000-7000-8000-0000000000e1'),
      // A hold far longer than the product ever had (300 s by default).
      { ...base(onGate, '01900000-0000-7000-8000-0000000000e2'), expiresAt: new Date(now + 86_400_000).toISOString() },
      // A key that is not this buyer's key of this purchase (its id is not derived from it).
      { ...base(onGate, '01900000-0000-7000-8000-0000000000e3'), key: { key: 'k', claimId: '01900000-0000-7000-8000-0000000000c2', scope: 'purchase', hash: 'h', answered: true } },
      // A key of another scope.
      (() => {
        const hash = requestHash('pay:x', null);
        const orderId = keyedOrderId({ buyerId: onGate.buyer.id, key: 'k2', hash });
        return { ...base(onGate, orderId), key: { key: 'k2', claimId: '01900000-0000-7000-8000-0000000000c3', scope: 'pay:x', hash, answered: true } };
      })(),
    ];
    for (const order of cases) {
      const body = placedOrdersBody([order]);
      await publishRaw(body, { contentType: SIGNED_CONTENT_TYPE, headers: { [SIGNATURE_HEADER]: signer.sign(body) } });
    }
    await waitFor('the orders given up', () => consumerStats().abandoned >= abandoned + cases.length);
    for (const at of [onAtomic, onGate]) {
      const { databases } = t.server.system.stores;
      const ids = cases.map((order) => order.orderId);
      expect(await databases.orders`select id from orders where id = any(${databases.orders.array(ids)}::uuid[])`).toHaveLength(0);
      expect(await databases.orders`select key from idempotency_keys where buyer_id = ${at.buyer.id}`).toHaveLength(0);
      // At most a voided tombstone under the id, which counts nowhere.
      const live = await databases.inventory`select id from allocations where product_id = ${at.productId} and status in ('held', 'paid')`;
      expect(live).toHaveLength(0);
      expect((await t.api.call<{ remaining: number }>('GET', `/v1/products/${at.productId}`)).body.remaining).toBe(10);
      expect((await t.api.audit(at.productId)).violations).toEqual([]);
    }
  });
});

describe('a genuine message', () => {
  it('delivered twice is acked, and the second delivery changes nothing', async () => {
    const product = await t.api.createProduct({ stock: 5, strategy: 'redis-lua' });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const bought = await t.api.purchase(buyer.token, product.id);
    expect(bought.status).toBe(201);
    const order = bought.body['order'] as { id: string; amountCents: number; expiresAt: string; createdAt: string };
    await waitFor('the order written', async () => (await t.api.call('GET', `/v1/orders/${order.id}`, { token: buyer.token })).status === 200);
    const written = consumerStats().written;
    const replay = placedOrdersBody([
      { orderId: order.id, productId: product.id, buyerId: buyer.id, quantity: 1, amountCents: order.amountCents, expiresAt: order.expiresAt, placedAt: order.createdAt },
    ]);
    await publishRaw(replay, { contentType: SIGNED_CONTENT_TYPE, headers: { [SIGNATURE_HEADER]: signer.sign(replay) } });
    await waitFor('the replay acked', () => consumerStats().written > written);
    expect((await pipeline.broker.depth()).placed).toBe(0);
    await expectInvariant(t.api, product.id, [bought]);
    const stats = await t.api.admin<{ held: number; remaining: number }>('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 1, remaining: 4 });
  });

  it('is recorded though an admin changed the price, shortened the hold and ended the sale while it waited', async () => {
    const product = await t.api.createProduct({ stock: 50, perBuyerLimit: 1, priceCents: 500, holdSeconds: 600, strategy: 'redis-lua' });
    const buyers = await t.api.createBuyers(30);
    await pipeline.consumer?.stop();
    let answers: Answer[];
    try {
      answers = await storm(30, (i) => t.api.purchase((buyers[i] as { token: string }).token, product.id));
      expect(tally(answers)).toEqual({ '201': 30 });
      expect((await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { priceCents: 9_999, holdSeconds: 5 })).status).toBe(200);
      expect((await t.api.admin('POST', `/v1/admin/products/${product.id}/end`)).status).toBe(200);
    } finally {
      pipeline.consumer?.start();
    }
    await waitFor('the pipeline drained', () => pipeline.drained(), 15_000);
    await expectInvariant(t.api, product.id, answers);
    const page = await t.api.admin<{ orders: { amountCents: number }[] }>('GET', `/v1/admin/products/${product.id}/orders?limit=500`);
    expect(page.body.orders).toHaveLength(30);
    expect(page.body.orders.every((order) => order.amountCents === 500)).toBe(true);
  });
});

describe('a genuine order PostgreSQL refuses', () => {
  it('is given up: voided, its unit back in the gate, its message dead-lettered, and its pay answers 410', async () => {
    const product = await t.api.createProduct({ stock: 5, strategy: 'redis-lua' });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const { databases } = t.server.system.stores;
    // PostgreSQL has no unit left that the gate still sells (drift): its `remaining >= 0` check refuses the hold.
    await databases.inventory`update products set remaining = 0 where id = ${product.id}`;
    const abandoned = consumerStats().abandoned;
    const dead = await deadLetters();
    const bought = await t.api.purchase(buyer.token, product.id);
    expect(bought.status).toBe(201);
    const orderId = (bought.body['order'] as { id: string }).id;
    await waitFor('the order given up', () => consumerStats().abandoned > abandoned, 15_000);
    await waitFor('its message dead-lettered', async () => (await deadLetters()) > dead);
    const paid = await t.api.call('POST', `/v1/orders/${orderId}/pay`, { token: buyer.token });
    expect(paid.status).toBe(410);
    expect(paid.body['code']).toBe('HOLD_EXPIRED');
    const [hold] = await databases.inventory<{ status: string; voided: boolean }[]>`select status, voided from allocations where id = ${orderId}`;
    expect(hold).toMatchObject({ status: 'cancelled', voided: true });
    // The unit is back in the gate; with PostgreSQL's count put back, the two agree again.
    expect(await pipeline.gate.remaining(product.id)).toBe(5);
    await databases.inventory`update products set remaining = 5 where id = ${product.id}`;
    expect((await t.api.audit(product.id)).violations).toEqual([]);
  });
});

describe('an upgrade from a version that did not sign', () => {
  it('drains the unsigned messages queued before it when PIPELINE_ACCEPT_UNSIGNED is on', async () => {
    const upgrading = await startTestServer({ ...withPipeline(), pipelineAcceptUnsigned: true, confirmTimeoutMs: CONFIRM_TIMEOUT_MS });
    try {
      const gate = upgrading.server.system.pipeline?.gate;
      if (!gate) throw new Error('no gate');
      const product = await upgrading.api.createProduct({ stock: 5, strategy: 'redis-lua' });
      const [buyer] = await upgrading.api.createBuyers(1);
      if (!buyer) throw new Error('no buyer');
      // A grant the old version made and published as it did: plain JSON, no signature.
      const orderId = '01900000-0000-7000-8000-0000000000f1';
      const granted = await gate.reserve({ allocationId: orderId, productId: product.id, buyerId: buyer.id, quantity: 1 });
      if (!granted.ok) throw new Error(`not granted: ${granted.reason}`);
      const order: PlacedOrder = {
        orderId,
        productId: product.id,
        buyerId: buyer.id,
        quantity: 1,
        amountCents: granted.allocation.amountCents,
        expiresAt: granted.allocation.expiresAt,
        placedAt: new Date().toISOString(),
      };
      await raw.send({ routingKey: queueNames(upgrading.config.queuePrefix).placed, durable: true }, { orders: [order] });
      await waitFor('the old message written', async () => (await upgrading.api.call('GET', `/v1/orders/${orderId}`, { token: buyer.token })).status === 200, 15_000);
      expect(upgrading.server.system.pipeline?.consumer?.stats.rejected.unsigned).toBe(0);
      const audit = await upgrading.api.audit(product.id);
      expect(audit.violations).toEqual([]);
      expect(audit.products[0]).toMatchObject({ held: 1, remaining: 4 });
    } finally {
      await upgrading.stop();
    }
  });
});
