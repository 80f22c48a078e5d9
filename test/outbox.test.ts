/**
 * The outbox of order events against real PostgreSQL and RabbitMQ: exactly one event per order
 * change (held, paid, cancelled, expired), none for a change that does not happen, each with the
 * order as the API shows it; the feed pages without ever skipping an event still being written,
 * and refuses bad input; the broker cut behind a proxy while orders are paid, and every paid
 * order's event arriving once it is back; an order written by the pipeline's consumer, and written
 * again, having one `held` event.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from 'rabbitmq-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import type { Order, OrderEvent, OrderEventsPage } from '../src/orders/orders.client.js';
import type { OrderEventRow } from '../src/orders/outbox.js';
import { EVENTS_PER_MESSAGE, intoMessages, orderEventsExchange } from '../src/orders/outbox-relay.js';
import type { Answer } from './support/api.js';
import { startTcpProxy } from './support/tcp-proxy.js';
import { startTestServer, TEST_AMQP_URL, TEST_DATABASE_URL, withPipeline, type TestServer } from './support/server.js';

const PRICE = 1_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let t: TestServer;
let orders: Sql;

beforeAll(async () => {
  // No broker: the events wait in the table, and the feed is how they are read.
  t = await startTestServer();
  orders = connect(databaseUrl(TEST_DATABASE_URL, `${t.config.databasePrefix}orders`), 2, 'flashsale:outbox-test');
});
afterAll(async () => {
  await orders?.end();
  await t?.stop();
});

const orderOf = (answer: Answer): Order => answer.body['order'] as Order;

/** Every event of the feed above `after`, paged `limit` at a time. */
async function feed(server: TestServer, after = 0, limit = 1000): Promise<OrderEvent[]> {
  const events: OrderEvent[] = [];
  for (let cursor = after; ; ) {
    const page = await server.api.admin<OrderEventsPage>('GET', `/v1/admin/order-events?after=${cursor}&limit=${limit}`);
    expect(page.status).toBe(200);
    events.push(...page.body.events);
    if (page.body.events.length < limit) return events;
    cursor = page.body.nextAfter;
  }
}

/** The last `seq` the feed has now: what the next events are numbered above. */
async function cursorNow(server: TestServer): Promise<number> {
  return (await feed(server)).at(-1)?.seq ?? 0;
}

/** The feed's events of these orders above `after`, once there are `count` of them (a page may wait out a transaction still running). */
async function eventsOf(server: TestServer, orderIds: readonly string[], count: number, after = 0): Promise<OrderEvent[]> {
  const ids = new Set(orderIds);
  const until = Date.now() + 15_000;
  for (;;) {
    const events = (await feed(server, after)).filter((event) => ids.has(event.orderId));
    if (events.length >= count || Date.now() > until) return events;
    await sleep(100);
  }
}

describe('order events', () => {
  it('writes exactly one event per change of an order, in order, with the order as the API shows it', async () => {
    const product = await t.api.createProduct({ stock: 10, priceCents: PRICE });
    const lapsing = await t.api.createProduct({ stock: 10, priceCents: PRICE, holdSeconds: 1 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const after = await cursorNow(t);

    const paidHold = await t.api.purchase(buyer.token, product.id);
    expect(paidHold.status).toBe(201);
    const paid = await t.api.call('POST', `/v1/orders/${orderOf(paidHold).id}/pay`, { token: buyer.token });
    expect(paid.status).toBe(200);
    const cancelledHold = await t.api.purchase(buyer.token, product.id);
    const cancelled = await t.api.call('POST', `/v1/orders/${orderOf(cancelledHold).id}/cancel`, { token: buyer.token });
    expect(cancelled.status).toBe(200);
    const lapsedHold = await t.api.purchase(buyer.token, lapsing.id);
    expect(lapsedHold.status).toBe(201);
    // The sweeper (every second) expires it.
    const ids = [paidHold, cancelledHold, lapsedHold].map((answer) => orderOf(answer).id);
    const events = await eventsOf(t, ids, 6, after);
    const lapsed = await t.api.call('GET', `/v1/orders/${orderOf(lapsedHold).id}`, { token: buyer.token });
    expect(orderOf(lapsed).status).toBe('expired');

    expect(events.map((event) => [event.orderId, event.kind])).toEqual([
      [ids[0], 'held'],
      [ids[0], 'paid'],
      [ids[1], 'held'],
      [ids[1], 'cancelled'],
      [ids[2], 'held'],
      [ids[2], 'expired'],
    ]);
    expect(events.map((event) => event.order)).toEqual([
      orderOf(paidHold),
      orderOf(paid),
      orderOf(cancelledHold),
      orderOf(cancelled),
      orderOf(lapsedHold),
      orderOf(lapsed),
    ]);
    for (const [i, event] of events.entries()) {
      expect(event.id).toMatch(UUID);
      expect(event.seq).toBeGreaterThan(i === 0 ? after : (events[i - 1] as OrderEvent).seq);
      expect(Date.parse(event.occurredAt)).not.toBeNaN();
    }
    expect(new Set(events.map((event) => event.id)).size).toBe(events.length);
  });

  it('writes no event for a change that does not happen', async () => {
    const product = await t.api.createProduct({ stock: 3, priceCents: PRICE });
    const [buyer, late, late2] = await t.api.createBuyers(3);
    const [poor] = await t.api.createBuyers(1, 0);
    if (!buyer || !late || !late2 || !poor) throw new Error('no buyers');
    const key = { 'idempotency-key': randomUUID() };
    const held = await t.api.purchase(buyer.token, product.id, 1, key);
    expect(held.status).toBe(201);
    const id = orderOf(held).id;
    expect((await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token })).status).toBe(200);
    const after = await cursorNow(t);

    // The same purchase again (its order exists), a second payment, a cancel of a paid order, a
    // sweep with nothing due: no order changes, so no event.
    const replayed = await t.api.purchase(buyer.token, product.id, 1, key);
    expect(replayed.status).toBe(201);
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect((await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token })).body['code']).toBe('ORDER_ALREADY_PAID');
    expect((await t.api.call('POST', `/v1/orders/${id}/cancel`, { token: buyer.token })).body['code']).toBe('ORDER_NOT_CANCELLABLE');
    await t.server.system.orders.sweepExpired();
    // A payment refused for want of money, and a purchase refused: only the holds are changes.
    const poorHold = await t.api.purchase(poor.token, product.id);
    const poorId = orderOf(poorHold).id;
    expect((await t.api.call('POST', `/v1/orders/${poorId}/pay`, { token: poor.token })).body['code']).toBe('INSUFFICIENT_FUNDS');
    const lateHold = await t.api.purchase(late.token, product.id);
    const lateId = orderOf(lateHold).id;
    expect((await t.api.purchase(late2.token, product.id)).body['code']).toBe('SOLD_OUT');
    // A cancel, then the same cancel again and a payment of the cancelled order: one change.
    expect((await t.api.call('POST', `/v1/orders/${lateId}/cancel`, { token: late.token })).status).toBe(200);
    expect((await t.api.call('POST', `/v1/orders/${lateId}/cancel`, { token: late.token })).status).toBe(200);
    expect((await t.api.call('POST', `/v1/orders/${lateId}/pay`, { token: late.token })).body['code']).toBe('ORDER_NOT_PAYABLE');

    const expected = [
      [poorId, 'held'],
      [lateId, 'held'],
      [lateId, 'cancelled'],
    ];
    const events = await eventsOf(t, [id, poorId, lateId], expected.length, after);
    expect(events.map((event) => [event.orderId, event.kind])).toEqual(expected);
    // Nothing else was written meanwhile (the feed has settled past the last of them).
    expect((await feed(t, after)).map((event) => [event.orderId, event.kind])).toEqual(expected);
  });

  it('counts the events it writes in /metrics, and the backlog no relay has taken', async () => {
    const metrics = await t.api.call<string>('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^flashsale_order_events_written_total\{kind="held"\} [1-9]/m);
    expect(metrics.body).toMatch(/^flashsale_order_events_written_total\{kind="paid"\} [1-9]/m);
    expect(metrics.body).toMatch(/^flashsale_order_events_unrelayed [1-9]/m);
    expect(metrics.body).toMatch(/^flashsale_order_events_oldest_unrelayed_seconds [0-9]/m);
    expect(metrics.body).toMatch(/^flashsale_order_events_relayed_total 0$/m);
  });
});

describe('the order events feed', () => {
  it('pages through the events by seq, each once, and says where to go on from', async () => {
    const product = await t.api.createProduct({ stock: 5, priceCents: PRICE });
    const buyers = await t.api.createBuyers(5);
    const after = await cursorNow(t);
    for (const buyer of buyers) expect((await t.api.purchase(buyer.token, product.id)).status).toBe(201);
    const whole = await feed(t, after);
    expect(whole).toHaveLength(5);
    expect(await feed(t, after, 2)).toEqual(whole);

    const first = await t.api.admin<OrderEventsPage>('GET', `/v1/admin/order-events?after=${after}&limit=2`);
    expect(first.body.events).toEqual(whole.slice(0, 2));
    expect(first.body.nextAfter).toBe(whole[1]?.seq);
    const last = whole.at(-1)?.seq ?? 0;
    const empty = await t.api.admin<OrderEventsPage>('GET', `/v1/admin/order-events?after=${last}`);
    expect(empty.body).toEqual({ events: [], nextAfter: last });
    // The default page starts at the first event kept and holds at most 100.
    const defaults = await t.api.admin<OrderEventsPage>('GET', '/v1/admin/order-events');
    expect(defaults.body.events[0]?.seq).toBe((await feed(t))[0]?.seq);
    expect(defaults.body.events.length).toBeLessThanOrEqual(100);
  });

  it('never lets a page overtake an event that is still being written', async () => {
    const product = await t.api.createProduct({ stock: 1, priceCents: PRICE });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const after = await cursorNow(t);
    // A transaction that has written an order and its event (taking a seq) and not committed, as
    // a slow order change would.
    const unseen = randomUUID();
    const slow = await orders.reserve();
    try {
      await slow`begin`;
      const [taken] = await slow<{ seq: number }[]>`
        with o as (
          insert into orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
          values (${unseen}, ${unseen}, ${unseen}, 1, 0, 'held', now()) returning id)
        insert into order_events (order_id, kind) select id, 'held' from o returning seq`;
      const held = await t.api.purchase(buyer.token, product.id);
      expect(held.status).toBe(201);
      const id = orderOf(held).id;
      // Committed, with a larger seq; the page stops short of it while the smaller one may come.
      const [committed] = await orders<{ seq: number }[]>`select seq from order_events where order_id = ${id}`;
      expect(committed?.seq).toBeGreaterThan(taken?.seq ?? Infinity);
      expect((await feed(t, after)).map((event) => event.orderId)).not.toContain(id);
      await slow`commit`;
      const events = await feed(t, after);
      expect(events.map((event) => event.seq)).toEqual([taken?.seq, committed?.seq]);
    } finally {
      await slow`rollback`.catch(() => undefined);
      slow.release();
      await orders`delete from order_events where order_id = ${unseen}`;
      await orders`delete from orders where id = ${unseen}`;
    }
  });

  it('refuses bad input with a problem document and a stable code', async () => {
    for (const query of ['after=-1', 'after=abc', 'after=1.5', 'after=', 'limit=0', 'limit=1001', 'limit=ten', 'since=3']) {
      const answer = await t.api.admin('GET', `/v1/admin/order-events?${query}`);
      expect(answer.status, query).toBe(400);
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(answer.body['code']).toBe('VALIDATION_FAILED');
    }
    const anonymous = await t.api.call('GET', '/v1/admin/order-events');
    expect([anonymous.status, anonymous.body['code']]).toEqual([401, 'UNAUTHORIZED']);
    const [buyer] = await t.api.createBuyers(1);
    const notAdmin = await t.api.call('GET', '/v1/admin/order-events', { token: buyer?.token ?? '' });
    expect([notAdmin.status, notAdmin.body['code']]).toEqual([403, 'FORBIDDEN']);
  });

  it('removes relayed events past their retention, and keeps the ones not relayed', async () => {
    const product = await t.api.createProduct({ stock: 2, priceCents: PRICE });
    const buyers = await t.api.createBuyers(2);
    const ids: string[] = [];
    for (const buyer of buyers) ids.push(orderOf(await t.api.purchase(buyer.token, product.id)).id);
    const [relayed, waiting] = ids;
    await orders`update order_events set relayed_at = now() - interval '2 hours' where order_id = ${relayed ?? ''}`;
    expect(await t.server.system.orders.outbox.removeRelayed(1)).toBe(1);
    const left = await orders<{ order_id: string }[]>`select order_id from order_events where order_id = any(${orders.array(ids)}::uuid[])`;
    expect(left.map((row) => row.order_id)).toEqual([waiting]);
  });
});

describe('the relay cutting a batch into messages', () => {
  const row = (seq: number, kind: OrderEventRow['kind']): OrderEventRow => ({
    id: `e${seq}`,
    seq,
    kind,
    order_id: `o${seq}`,
    created_at: new Date(0),
    buyer_id: 'b',
    product_id: 'p',
    quantity: 1,
    amount_cents: 100,
    expires_at: new Date(0),
    order_created_at: new Date(0),
  });

  it('sends runs of consecutive events of one kind, in seq order, at most EVENTS_PER_MESSAGE each', () => {
    const kinds: OrderEventRow['kind'][] = ['paid', 'held', 'held', 'paid', 'held', 'expired', 'expired'];
    const batch = [...kinds.map((kind, i) => row(i + 1, kind)), ...Array.from({ length: 250 }, (_, i) => row(100 + i, 'held'))];
    const messages = intoMessages(batch);
    expect(messages.map((events) => `${events[0]?.kind}×${events.length}`)).toEqual([
      'paid×1',
      'held×2',
      'paid×1',
      'held×1',
      'expired×2',
      `held×${EVENTS_PER_MESSAGE}`,
      `held×${EVENTS_PER_MESSAGE}`,
      `held×${250 - 2 * EVENTS_PER_MESSAGE}`,
    ]);
    // Nothing lost, nothing twice, the batch's order kept: an order's `held` never follows its `paid`.
    expect(messages.flat()).toEqual(batch);
    expect(intoMessages([])).toEqual([]);
  });
});

describe('the relay with the broker cut', () => {
  it('keeps answering payments, keeps their events, and delivers every one once the broker is back', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(TEST_AMQP_URL).port || 5672) });
    const amqpUrl = new URL(TEST_AMQP_URL);
    amqpUrl.port = String(proxy.port);
    // Names of its own, removed when it stops, as `withPipeline` gives; no Redis.
    const queuePrefix = `t.${randomUUID().slice(0, 10)}.`;
    // This file's first server is still up: both keep to the file's share of PostgreSQL (pg-budget.ts).
    const cut = await startTestServer({ amqpUrl: amqpUrl.toString(), queuePrefix, dbPoolSize: 4 });
    const cutOrders = connect(databaseUrl(TEST_DATABASE_URL, `${cut.config.databasePrefix}orders`), 1, 'flashsale:outbox-test');
    // A consumer's own queue, bound to the exchange, on a connection that is never cut.
    const rabbit = new Connection(TEST_AMQP_URL);
    const queue = `${queuePrefix}test-consumer`;
    const exchange = orderEventsExchange(queuePrefix);
    try {
      await rabbit.exchangeDeclare({ exchange, type: 'topic', durable: true });
      await rabbit.queueDeclare({ queue, durable: true });
      await rabbit.queueBind({ queue, exchange, routingKey: 'order.*' });

      const product = await cut.api.createProduct({ stock: 20, priceCents: PRICE });
      const buyers = await cut.api.createBuyers(20);
      const held = await Promise.all(buyers.map((buyer) => cut.api.purchase(buyer.token, product.id)));
      expect(held.map((answer) => answer.status)).toEqual(buyers.map(() => 201));

      await proxy.cut();
      const paid = await Promise.all(
        buyers.map((buyer, i) => cut.api.call('POST', `/v1/orders/${orderOf(held[i] as Answer).id}/pay`, { token: buyer.token })),
      );
      expect(paid.map((answer) => answer.status)).toEqual(buyers.map(() => 200));
      const paidIds = paid.map((answer) => orderOf(answer).id).sort();
      // The broker away: every paid event waits in the table, and the relay keeps trying.
      await sleep(1_500);
      const [waiting] = await cutOrders<{ count: number }[]>`
        select count(*)::int as count from order_events where kind = 'paid' and relayed_at is null`;
      expect(waiting?.count).toBe(20);
      const metrics = await cut.api.call<string>('GET', '/metrics');
      expect(metrics.body).toMatch(/^flashsale_order_events_unrelayed (2[0-9]|[3-9][0-9])$/m);

      await proxy.restore();
      const seen = new Map<string, OrderEvent>();
      const deliveries: string[] = [];
      for (const until = Date.now() + 30_000; Date.now() < until; ) {
        const message = await rabbit.basicGet({ queue, noAck: true });
        if (!message) {
          if ([...seen.values()].filter((event) => event.kind === 'paid').length === 20) break;
          await sleep(100);
          continue;
        }
        // A message carries a run of consecutive events of one kind, in `seq` order.
        const { events } = message.body as { events: OrderEvent[] };
        expect(events.length).toBeGreaterThan(0);
        expect(events.length).toBeLessThanOrEqual(EVENTS_PER_MESSAGE);
        expect(message.headers?.['x-events']).toBe(events.length);
        const kind = events[0]?.kind;
        expect(message.routingKey).toBe(`order.${kind}`);
        expect(message.exchange).toBe(exchange);
        expect(message.durable).toBe(true);
        expect(message.contentType).toBe('application/json');
        for (const [i, event] of events.entries()) {
          expect(event.kind).toBe(kind);
          if (i > 0) expect(event.seq).toBeGreaterThan(events[i - 1]?.seq ?? Infinity);
          deliveries.push(event.id);
          seen.set(event.id, event);
        }
      }
      // Deduplicated by id, the paid events are exactly the paid orders, each with its order.
      const paidEvents = [...seen.values()].filter((event) => event.kind === 'paid');
      expect(paidEvents.map((event) => event.orderId).sort()).toEqual(paidIds);
      for (const event of paidEvents) expect(event.order).toEqual(paid.map(orderOf).find((order) => order.id === event.orderId));
      expect(deliveries.length).toBeGreaterThanOrEqual(seen.size);
      // Every event is stamped relayed once it is confirmed.
      for (let waited = 0; ; waited += 100) {
        const [left] = await cutOrders<{ count: number }[]>`select count(*)::int as count from order_events where relayed_at is null`;
        if (left?.count === 0) break;
        if (waited > 10_000) throw new Error(`${left?.count} events still unrelayed`);
        await sleep(100);
      }
      const after = await cut.api.call<string>('GET', '/metrics');
      expect(after.body).toMatch(/^flashsale_order_events_unrelayed 0$/m);
      // 20 held and 20 paid, each stamped once, however many times it was published.
      expect(after.body).toMatch(/^flashsale_order_events_relayed_total 40$/m);
    } finally {
      await proxy.restore().catch(() => undefined);
      await rabbit.queueDelete({ queue }).catch(() => undefined);
      await rabbit.close();
      await cutOrders.end();
      await cut.stop();
      await proxy.close();
    }
  });
});

describe('orders written by the pipeline', () => {
  it('have one held event, however many times the consumer writes them', async () => {
    const piped = await startTestServer({ ...withPipeline(), strategy: 'redis-lua', dbPoolSize: 4 });
    try {
      const product = await piped.api.createProduct({ stock: 1, priceCents: PRICE });
      const [buyer] = await piped.api.createBuyers(1);
      if (!buyer) throw new Error('no buyer');
      const held = await piped.api.purchase(buyer.token, product.id);
      expect(held.status).toBe(201);
      const order = orderOf(held);
      const [event] = await eventsOf(piped, [order.id], 1);
      expect(event).toMatchObject({ kind: 'held', orderId: order.id, order });
      // A redelivery of the same placed order: the order is there, so nothing is written.
      await piped.server.system.orders.recordPlaced([
        {
          orderId: order.id,
          productId: order.productId,
          buyerId: order.buyerId,
          quantity: order.quantity,
          amountCents: order.amountCents,
          expiresAt: order.expiresAt,
          placedAt: order.createdAt,
        },
      ]);
      expect((await feed(piped)).filter((each) => each.orderId === order.id)).toEqual([event]);
    } finally {
      await piped.stop();
    }
  });
});
