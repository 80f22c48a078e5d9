/**
 * Idempotency keys on purchase and pay, scoped to the buyer, on real PostgreSQL: a repeat gets
 * the first definitive answer, a concurrent repeat is told to wait, another body is refused, and
 * a storm of retries makes one order and one debit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal } from '../src/infra/errors.js';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { keyedOrderId, requestHash, STALE_CLAIM_DEADLINES, type HeldKey, type KeptOutcome } from '../src/orders/idempotency.js';
import { validate as isUuid, version as uuidVersion } from 'uuid';
import type { Answer } from './support/api.js';
import { startTestServer, type TestServer } from './support/server.js';
import { holdProductRow } from './support/row-lock.js';
import { expectInvariant, storm, tally } from './support/storm.js';

let t: TestServer;
beforeAll(async () => {
  // Sold-out hints that outlive every test here: in "a herd with keys", a hint that lapsed (250 ms
  // by default) while a busy machine was still delivering the herd sent late buyers to the store,
  // each claiming and then storing its refusal, which is what that test counts.
  t = await startTestServer({ soldOutHintMs: 60_000 });
});
afterAll(async () => {
  await t?.stop();
});

const orderId = (answer: Answer): string => (answer.body['order'] as { id: string }).id;
const keyed = (key: string): Record<string, string> => ({ 'idempotency-key': key });
/** A key as a request holds it, with a claim of its own (`hash` stands for the request's body). */
const heldKey = (buyerId: string, key: string, hash = `h-${key}`): HeldKey => ({
  buyerId,
  key,
  claimId: randomUUID(),
  scope: 'purchase',
  hash,
});
const soldOut = (extras: Record<string, unknown> = {}): KeptOutcome => ({ ok: false, refusal: refusal('SOLD_OUT', 'sold out', extras) });

async function debitsOf(userId: string): Promise<number> {
  const sql = t.server.system.stores.databases.users;
  const [row] = await sql<{ n: number }[]>`select count(*)::int8 as n from ledger_entries where user_id = ${userId} and kind = 'debit'`;
  return row?.n ?? 0;
}

describe('a keyed order id', () => {
  it('is a UUID, the same for the same buyer, key and body, and another for any of them changed', () => {
    const id = keyedOrderId({ buyerId: 'b', key: 'k', hash: 'h' });
    expect(isUuid(id)).toBe(true);
    expect(uuidVersion(id)).toBe(8);
    expect(keyedOrderId({ buyerId: 'b', key: 'k', hash: 'h' })).toBe(id);
    const others = [
      keyedOrderId({ buyerId: 'c', key: 'k', hash: 'h' }),
      keyedOrderId({ buyerId: 'b', key: 'l', hash: 'h' }),
      keyedOrderId({ buyerId: 'b', key: 'k', hash: 'i' }),
    ];
    expect(new Set([id, ...others]).size).toBe(4);
  });
});

describe('idempotency keys on purchase', () => {
  it('returns the first answer to a repeat of the same key and body, and refuses the key for another body', async () => {
    const [buyer, other] = await t.api.createBuyers(2);
    if (!buyer || !other) throw new Error('no buyers');
    const product = await t.api.createProduct({ stock: 5 });
    const first = await t.api.purchase(buyer.token, product.id, 1, keyed('buy-1'));
    expect(first.status).toBe(201);
    const repeat = await t.api.purchase(buyer.token, product.id, 1, keyed('buy-1'));
    expect(repeat.status).toBe(201);
    expect(repeat.headers['idempotent-replayed']).toBe('true');
    expect(repeat.body).toEqual(first.body);

    const reused = await t.api.purchase(buyer.token, product.id, 2, keyed('buy-1'));
    expect(reused.status).toBe(422);
    expect(reused.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });

    // Scoped to the buyer: another buyer's identical key is another request.
    const theirs = await t.api.purchase(other.token, product.id, 1, keyed('buy-1'));
    expect(theirs.status).toBe(201);
    expect(orderId(theirs)).not.toBe(orderId(first));
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 2, remaining: 3 });
  });

  it('replays an instant purchase (reserve and pay in one call) as the paid order it first answered', async () => {
    const [buyer] = await t.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 700, stock: 3 });
    const body = { productId: product.id, quantity: 1, pay: true };
    const first = await t.api.call('POST', '/v1/purchases', { token: buyer.token, body, headers: keyed('instant') });
    expect(first.status).toBe(201);
    expect(first.body['order']).toMatchObject({ status: 'paid' });
    const repeat = await t.api.call('POST', '/v1/purchases', { token: buyer.token, body, headers: keyed('instant') });
    expect(repeat.headers['idempotent-replayed']).toBe('true');
    expect(repeat.status).toBe(201);
    expect(repeat.body).toEqual(first.body);
    expect(await debitsOf(buyer.id)).toBe(1);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ paid: 1, remaining: 2 });
    // The key learnt its order with the order itself, before the payment (see "a stale claim").
    const [key] = await t.server.system.stores.databases.orders<{ order_id: string }[]>`
      select order_id from idempotency_keys where buyer_id = ${buyer.id} and key = 'instant'`;
    expect(key?.order_id).toBe(orderId(first));
  });

  it('stores a definitive refusal: a repeat gets the same refusal even after stock is added', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 0 });
    const first = await t.api.purchase(buyer.token, product.id, 1, keyed('sold-out'));
    expect(first.body).toMatchObject({ code: 'SOLD_OUT' });
    await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: 1 });
    const repeat = await t.api.purchase(buyer.token, product.id, 1, keyed('sold-out'));
    expect(repeat.status).toBe(409);
    expect(repeat.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(repeat.body).toMatchObject({ code: 'SOLD_OUT' });
    expect((await t.api.purchase(buyer.token, product.id, 1, keyed('fresh'))).status).toBe(201);
  });

  it('answers IDEMPOTENCY_IN_PROGRESS while the first request with the key has no answer yet', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 1 });
    const body = { productId: product.id, quantity: 1 };
    const sql = t.server.system.stores.databases.orders;
    await sql`insert into idempotency_keys (buyer_id, key, scope, request_hash)
              values (${buyer.id}, 'running', 'purchase', ${requestHash('purchase', body)})`;
    const answer = await t.api.call('POST', '/v1/purchases', { token: buyer.token, body, headers: keyed('running') });
    expect(answer.status).toBe(409);
    expect(answer.body).toMatchObject({ code: 'IDEMPOTENCY_IN_PROGRESS' });
    expect(answer.headers['retry-after']).toBe('1');
    // The running attempt reserves under the same order id (it comes from the key), so the unit
    // this request found is that attempt's as well: it stays, and comes back at expiry if no order has it.
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 1, cancelled: 0, remaining: 0 });
  });

  it('never lets a double submit refuse itself: one key, a limit of one, 30 at once', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 10, perBuyerLimit: 1 });
    const answers = await storm(30, () => t.api.purchase(buyer.token, product.id, 1, keyed('double')));
    // Run side by side, the copies would reserve too: one takes the buyer's only unit, and the
    // copy holding the key could be refused over the limit while that unit goes back.
    const counts = tally(answers);
    expect(Object.keys(counts).every((key) => key === '201' || key === '409 IDEMPOTENCY_IN_PROGRESS')).toBe(true);
    expect(counts['201']).toBeGreaterThanOrEqual(1);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 1, remaining: 9 });
    await expectInvariant(t.api, product.id, answers);
  });

  it('makes one order when 50 purchases with one key race', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 100 });
    const answers = await storm(50, () => t.api.purchase(buyer.token, product.id, 1, keyed('stampede')));
    const counts = tally(answers);
    expect(Object.keys(counts).every((key) => key === '201' || key === '409 IDEMPOTENCY_IN_PROGRESS')).toBe(true);
    const created = answers.filter((answer) => answer.status === 201);
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(new Set(created.map(orderId)).size).toBe(1);
    const me = await t.api.call<{ orders: unknown[] }>('GET', '/v1/me', { token: buyer.token });
    expect(me.body.orders).toHaveLength(1);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 1, remaining: 99 });
    await expectInvariant(t.api, product.id, answers);
  });

  it('removes keys older than 24 hours with the clean-up job: the key is free for another request, and still names its purchase', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 5 });
    const first = await t.api.purchase(buyer.token, product.id, 1, keyed('old'));
    const sql = t.server.system.stores.databases.orders;
    await sql`update idempotency_keys set created_at = now() - interval '25 hours' where buyer_id = ${buyer.id}`;
    expect(await t.server.system.orders.keys.cleanup()).toBeGreaterThanOrEqual(1);
    const [left] = await sql<{ n: number }[]>`select count(*)::int8 as n from idempotency_keys where buyer_id = ${buyer.id}`;
    expect(left?.n).toBe(0);
    // Another request may use the key now (no longer IDEMPOTENCY_KEY_REUSED)…
    const other = await t.api.purchase(buyer.token, product.id, 2, keyed('old'));
    expect(other.status).toBe(201);
    expect(orderId(other)).not.toBe(orderId(first));
    // …while the same request still finds the one order it made: its order id comes from the key.
    await sql`update idempotency_keys set created_at = now() - interval '25 hours' where buyer_id = ${buyer.id}`;
    await t.server.system.orders.keys.cleanup();
    const again = await t.api.purchase(buyer.token, product.id, 1, keyed('old'));
    expect(again).toMatchObject({ status: 201, headers: { 'idempotent-replayed': 'true' } });
    expect(orderId(again)).toBe(orderId(first));
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 3, remaining: 2 });
  });
});

describe('claims in one statement', () => {
  it('claims each new key once when a turn brings many, repeats included, and replays a kept outcome', async () => {
    const store = t.server.system.orders.keys;
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    expect(await store.answerFirst(heldKey(buyer.id, 'answered'), soldOut())).toEqual(soldOut());
    const keys = Array.from({ length: 120 }, (_, i) => `batch-${i % 100}`);
    const claims = await Promise.all([
      ...keys.map((key) => store.claim(heldKey(buyer.id, key))),
      store.claim(heldKey(buyer.id, 'answered')),
    ]);
    // The first claim of each key keeps it; the repeats (indices 100–119) find it claimed and
    // unanswered: in progress, never claimed twice.
    expect(claims.slice(0, 100).every((claim) => claim.claimed)).toBe(true);
    for (const claim of claims.slice(100, 120)) {
      expect(claim).toMatchObject({ claimed: false, outcome: { ok: false, refusal: { code: 'IDEMPOTENCY_IN_PROGRESS' } } });
    }
    expect(claims.at(-1)).toEqual({ claimed: false, outcome: { ...soldOut(), replayed: true } });
  });
});

describe('a herd with keys', () => {
  it('writes each key once, with its outcome: no buyer claims first and answers after', async () => {
    const product = await t.api.createProduct({ stock: 1 });
    const buyers = await t.api.createBuyers(300);
    const store = t.server.system.orders.keys;
    // Counted on the real store (nothing is faked): outcomes kept after a claim, one per call.
    const complete = store.complete.bind(store);
    let completed = 0;
    store.complete = async (...args) => {
      completed += 1;
      return complete(...args);
    };
    // The product's row is held by another transaction while the herd arrives, so every buyer is
    // in by the time the first reservation comes back: claiming first, all 300 would have claimed.
    const inventory = t.server.system.stores.databases.inventory;
    let answers: Answer[];
    try {
      // The herd starts once the row is held, so no buyer can reserve before it.
      const row = await holdProductRow(inventory, product.id);
      const released = new Promise((resolve) => setTimeout(resolve, 700)).then(() => row.release());
      answers = await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id, 1, keyed(`herd-${i}`)));
      await released;
    } finally {
      delete (store as { complete?: unknown }).complete;
    }
    expect(tally(answers)).toEqual({ '201': 1, '409 SOLD_OUT': 299 });
    await expectInvariant(t.api, product.id, answers);
    // A purchase writes its key with its outcome (the refusal, or the order) in one statement.
    // Claiming first, every refused buyer would have kept its answer after its claim (299 here).
    expect(completed).toBe(0);
    const sql = t.server.system.stores.databases.orders;
    const [stored] = await sql<{ n: number }[]>`
      select count(*)::int as n from idempotency_keys
       where key like 'herd-%' and status_code is not null and buyer_id = any(${buyers.map((buyer) => buyer.id)}::uuid[])`;
    expect(stored?.n).toBe(300);
    // Every refused buyer's retry with the same key is a replay of that refusal.
    const retried = await t.api.purchase(buyers[7]?.token ?? '', product.id, 1, keyed('herd-7'));
    expect(retried.headers['idempotent-replayed']).toBe('true');
    expect(retried.body).toEqual(answers[7]?.body);
  });
});

describe('an answer that is not definitive', () => {
  it('is not stored: a buyer told CONTENTION retries with the same key and buys', async () => {
    const product = await t.api.createProduct({ stock: 5 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const inventory = t.server.system.inventory;
    // One contended attempt, as optimistic gives after its retries; the key store stays the real one.
    inventory.reserve = async () => ({ ok: false, reason: 'CONTENTION', retryAfterSeconds: 1 });
    let contended: Answer;
    try {
      contended = await t.api.purchase(buyer.token, product.id, 1, keyed('contended'));
    } finally {
      delete (inventory as { reserve?: unknown }).reserve;
    }
    expect(contended.status).toBe(409);
    expect(contended.body['code']).toBe('CONTENTION');
    expect(contended.headers['retry-after']).toBe('1');
    const retried = await t.api.purchase(buyer.token, product.id, 1, keyed('contended'));
    expect(retried.status).toBe(201);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
    expect(await t.api.purchase(buyer.token, product.id, 1, keyed('contended'))).toMatchObject({ status: 201, body: retried.body });
  });
});

describe('outcomes in one statement', () => {
  it('keeps every outcome completed in one turn, each under its own key, and never overwrites one', async () => {
    const store = t.server.system.orders.keys;
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const keys = Array.from({ length: 60 }, (_, i) => `answer-${i}`);
    const held = keys.map((key) => heldKey(buyer.id, key));
    expect((await Promise.all(held.map((key) => store.claim(key)))).every((claim) => claim.claimed)).toBe(true);
    await Promise.all(held.map((key, i) => store.complete(key, soldOut({ n: i }))));
    // A second outcome for a key already answered changes nothing.
    await store.complete(held[0] ?? heldKey(buyer.id, 'answer-0'), soldOut({ n: 'late' }));
    const replays = await Promise.all(keys.map((key) => store.claim(heldKey(buyer.id, key))));
    expect(replays).toEqual(keys.map((_, i) => ({ claimed: false, outcome: { ...soldOut({ n: i }), replayed: true } })));
  });
});

describe('a stale claim', () => {
  it('is answered from the order its request recorded, never taken over to buy again', async () => {
    const product = await t.api.createProduct({ stock: 5 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    // An instant purchase whose process died after recording its order, before paying and answering.
    const held = await t.api.purchase(buyer.token, product.id);
    const body = { productId: product.id, quantity: 1, pay: true };
    const orders = t.server.system.stores.databases.orders;
    await orders`
      insert into idempotency_keys (buyer_id, key, scope, request_hash, order_id, created_at)
      values (${buyer.id}, 'crashed', 'purchase', ${requestHash('purchase', body)}, ${orderId(held)}, now() - interval '6 minutes')`;

    const retried = await t.api.call('POST', '/v1/purchases', { token: buyer.token, body, headers: keyed('crashed') });
    expect(retried.status).toBe(201);
    expect(retried.headers['idempotent-replayed']).toBe('true');
    expect(retried.body['order']).toMatchObject({ id: orderId(held), status: 'held' });
    const [count] = await orders<{ n: number }[]>`select count(*)::int as n from orders where buyer_id = ${buyer.id}`;
    expect(count?.n).toBe(1);
    expect(await debitsOf(buyer.id)).toBe(0);
  });
});

describe('a claim taken over', () => {
  it('is fenced at the store: the request that lost it can neither answer nor drop the key', async () => {
    const store = t.server.system.orders.keys;
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const stalled = heldKey(buyer.id, 'fenced');
    expect(await store.claim(stalled)).toEqual({ claimed: true, resumed: false });
    const orders = t.server.system.stores.databases.orders;
    // Stale after STALE_CLAIM_DEADLINES store deadlines: just short of it, the claim stands.
    const staleSeconds = (STALE_CLAIM_DEADLINES * t.config.storeDeadlineMs) / 1000;
    const aged = (seconds: number) =>
      orders`update idempotency_keys set created_at = now() - make_interval(secs => ${seconds}) where buyer_id = ${buyer.id} and key = 'fenced'`;
    await aged(staleSeconds - 2);
    expect(await store.claim(heldKey(buyer.id, 'fenced'))).toMatchObject({ claimed: false, outcome: { ok: false, refusal: { code: 'IDEMPOTENCY_IN_PROGRESS' } } });
    await aged(staleSeconds + 1);
    const retry = heldKey(buyer.id, 'fenced');
    expect(await store.claim(retry)).toEqual({ claimed: true, resumed: false });
    await store.complete(stalled, soldOut({ from: 'the stalled request' }));
    await store.abandon(stalled);
    expect(await store.claim(heldKey(buyer.id, 'fenced'))).toMatchObject({
      claimed: false,
      outcome: { ok: false, refusal: { code: 'IDEMPOTENCY_IN_PROGRESS' } },
    });
    await store.complete(retry, soldOut());
    expect(await store.claim(heldKey(buyer.id, 'fenced'))).toEqual({ claimed: false, outcome: { ...soldOut(), replayed: true } });
  });

  it('records no order for a purchase whose key was answered meanwhile: its unit goes back and it gets that outcome', async () => {
    const product = await t.api.createProduct({ stock: 3 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const body = { productId: product.id, quantity: 1 };
    const inventory = t.server.system.stores.databases.inventory;
    const orders = t.server.system.stores.databases.orders;
    // The purchase stalls on the product's row; a retry at another server is answered meanwhile.
    const row = await holdProductRow(inventory, product.id);
    let answer: Answer;
    try {
      const stalled = t.api.call('POST', '/v1/purchases', { token: buyer.token, body, headers: keyed('stall') });
      const retry = heldKey(buyer.id, 'stall', requestHash('purchase', body));
      expect(await t.server.system.orders.keys.answerFirst(retry, soldOut({ productId: product.id }))).toEqual(soldOut({ productId: product.id }));
      await row.release();
      answer = await stalled;
    } finally {
      await row.release();
    }
    expect(answer.status).toBe(409);
    expect(answer.headers['idempotent-replayed']).toBe('true');
    expect(answer.body).toMatchObject({ code: 'SOLD_OUT', productId: product.id });
    const [count] = await orders<{ n: number }[]>`select count(*)::int as n from orders where buyer_id = ${buyer.id}`;
    expect(count?.n).toBe(0);
    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 0, cancelled: 1, remaining: 3 });
  });
});

describe('idempotency keys on pay', () => {
  it('debits once when 20 retries of one pay with one key race, and replays the answer afterwards', async () => {
    const [buyer] = await t.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 1234, stock: 1 });
    const bought = await t.api.purchase(buyer.token, product.id);
    const id = orderId(bought);
    const answers = await storm(20, () => t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token, headers: keyed('pay-once') }));
    const counts = tally(answers);
    expect(counts['200']).toBeGreaterThanOrEqual(1);
    expect(Object.keys(counts).every((key) => key === '200' || key === '409 IDEMPOTENCY_IN_PROGRESS')).toBe(true);
    expect(await debitsOf(buyer.id)).toBe(1);

    const replay = await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token, headers: keyed('pay-once') });
    expect(replay.status).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body['order']).toMatchObject({ id, status: 'paid' });
    const me = await t.api.call('GET', '/v1/me', { token: buyer.token });
    expect(me.body['balanceCents']).toBe(10_000 - 1234);

    // Paying twice with a different key is refused with its own code, not charged again.
    const twice = await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token, headers: keyed('pay-twice') });
    expect(twice.status).toBe(409);
    expect(twice.body).toMatchObject({ code: 'ORDER_ALREADY_PAID' });
    expect(await debitsOf(buyer.id)).toBe(1);
    await expectInvariant(t.api, product.id, [bought]);
  });

  it('resumes a payment whose attempt ended unanswered: a retry with its key gets the order it paid, not ORDER_ALREADY_PAID', async () => {
    const [buyer] = await t.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 1 });
    const id = orderId(await t.api.purchase(buyer.token, product.id));
    // The attempt claimed its key, paid, and lost its answer to a store failure: its claim ended.
    const keys = t.server.system.orders.keys;
    const attempt: HeldKey = { buyerId: buyer.id, key: 'resume', claimId: randomUUID(), scope: `pay:${id}`, hash: requestHash(`pay:${id}`, null) };
    expect(await keys.claim(attempt)).toEqual({ claimed: true, resumed: false });
    expect((await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token })).status).toBe(200);
    await keys.abandon(attempt);

    const retried = await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token, headers: keyed('resume') });
    expect(retried.status).toBe(200);
    expect(retried.body['order']).toMatchObject({ id, status: 'paid' });
    expect(await debitsOf(buyer.id)).toBe(1);
    // Another key is another payment: refused, as it always was.
    const other = await t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token, headers: keyed('other') });
    expect(other.body).toMatchObject({ code: 'ORDER_ALREADY_PAID' });
  });

  it('refuses a pay key reused for another order', async () => {
    const [buyer] = await t.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 2 });
    const a = orderId(await t.api.purchase(buyer.token, product.id));
    const b = orderId(await t.api.purchase(buyer.token, product.id));
    expect((await t.api.call('POST', `/v1/orders/${a}/pay`, { token: buyer.token, headers: keyed('k') })).status).toBe(200);
    const reused = await t.api.call('POST', `/v1/orders/${b}/pay`, { token: buyer.token, headers: keyed('k') });
    expect(reused.status).toBe(422);
    expect(reused.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await debitsOf(buyer.id)).toBe(1);
  });
});

describe('kept answers of the HTTP form', () => {
  it('are replayed the same once migration 006 has turned them into outcomes', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 1 });
    const bought = await t.api.purchase(buyer.token, product.id, 1, keyed('old-order'));
    const refused = await t.api.purchase(buyer.token, product.id, 1, keyed('old-refusal'));
    expect(refused.body).toMatchObject({ code: 'SOLD_OUT' });
    const sql = t.server.system.stores.databases.orders;
    // As the route used to keep them: the 201's body, and the problem document itself.
    await sql`update idempotency_keys set response = jsonb_build_object('order', response -> 'order')
               where buyer_id = ${buyer.id} and key = 'old-order'`;
    await sql`update idempotency_keys set response = ${sql.json(refused.body as never)}
               where buyer_id = ${buyer.id} and key = 'old-refusal'`;
    const migration = await readFile(new URL('../src/orders/migrations/006_kept_outcomes.sql', import.meta.url), 'utf8');
    await sql.unsafe(migration);

    const order = await t.api.purchase(buyer.token, product.id, 1, keyed('old-order'));
    expect(order).toMatchObject({ status: 201, body: bought.body, headers: { 'idempotent-replayed': 'true' } });
    const refusal = await t.api.purchase(buyer.token, product.id, 1, keyed('old-refusal'));
    expect(refusal).toMatchObject({ status: 409, body: refused.body, headers: { 'idempotent-replayed': 'true' } });
  });
});
