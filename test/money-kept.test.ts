/**
 * Money is never kept for a hold that expired or was cancelled, on every interleaving of a
 * payment, the expiry sweep (or a cancel) and a confirm that fails. Each interleaving is forced
 * with locks the test holds on the real stores, never with sleeps: the buyer's balance row (the
 * payment's debit waits there, its ledger row written but not committed), the order's row (the
 * sweep's mark waits there, after its refund), inventory's allocations table (the payment's
 * confirm waits there, and its connection is then cut: a confirm whose outcome is unknown). A
 * refund that meets a debit being written waits for it on the order's debit slot, then gives it
 * back. After each: the balance is what it was before the purchase, the ledger has the debit and
 * its refund, and the audit is clean.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { holdRow, holdTable, type HeldRow } from './support/row-lock.js';
import { startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { waitFor } from './support/drill.js';

const PRICE = 2_500;
const BALANCE = 10_000;

let t: TestServer;
let admin: Sql;
let prefix: string;
let usersSql: Sql;
let inventorySql: Sql;
let ordersSql: Sql;

beforeAll(async () => {
  prefix = `t_${randomUUID().slice(0, 8)}_`;
  // The longest interval: the test runs each sweep itself, at the moment the interleaving needs it.
  t = await startTestServer({ databasePrefix: prefix, sweepIntervalMs: 60_000 });
  admin = connect(TEST_DATABASE_URL, 1, 'flashsale:money-kept-test');
  usersSql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}users`), 1, 'flashsale:money-kept-test');
  inventorySql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}inventory`), 1, 'flashsale:money-kept-test');
  ordersSql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}orders`), 1, 'flashsale:money-kept-test');
  // Connected (and the server's types read) before the first statement that sends an array.
  await Promise.all([admin`select 1`, usersSql`select 1`, inventorySql`select 1`, ordersSql`select 1`]);
});
afterAll(async () => {
  await Promise.all([admin, usersSql, inventorySql, ordersSql].map((sql) => sql?.end({ timeout: 5 })));
  await t?.stop();
});

interface Sale {
  readonly buyer: { readonly id: string; readonly token: string };
  readonly productId: string;
  readonly orderId: string;
}

/** A buyer with `BALANCE` and one held order of a product of 2 units. */
async function sale(): Promise<Sale> {
  const [buyer] = await t.api.createBuyers(1, BALANCE);
  if (!buyer) throw new Error('no buyer');
  const product = await t.api.createProduct({ priceCents: PRICE, stock: 2, perBuyerLimit: 2, holdSeconds: 300 });
  const answer = await t.api.purchase(buyer.token, product.id);
  expect(answer.status).toBe(201);
  return { buyer, productId: product.id, orderId: (answer.body['order'] as { id: string }).id };
}

const pay = (s: Sale, key?: string) =>
  t.api.call(
    'POST',
    `/v1/orders/${s.orderId}/pay`,
    key === undefined ? { token: s.buyer.token } : { token: s.buyer.token, headers: { 'idempotency-key': key } },
  );

/** Makes the order's hold past its expiry now, in inventory's and orders' databases. */
async function lapse(orderId: string): Promise<void> {
  const at = new Date(Date.now() - 1000);
  await inventorySql`update allocations set expires_at = ${at} where id = ${orderId}`;
  await ordersSql`update orders set expires_at = ${at} where id = ${orderId}`;
}

/** The backends of `database` waiting for a lock, whose statement contains `text`. */
async function waiting(database: string, text: string): Promise<number[]> {
  const rows = await admin<{ pid: number }[]>`
    select pid from pg_stat_activity
     where datname = ${database} and wait_event_type = 'Lock' and position(${text} in query) > 0`;
  return rows.map((row) => row.pid);
}

async function untilWaiting(database: string, text: string): Promise<number> {
  let pid: number | undefined;
  await waitFor(`a statement of ${database} waiting on the lock (${text})`, async () => {
    pid = (await waiting(database, text))[0];
    return pid !== undefined;
  });
  if (pid === undefined) throw new Error('unreachable');
  return pid;
}

/** Holds the buyer's balance row until a payment's debit waits on it: the payment has read the order held. */
async function debitWaiting(s: Sale, payment: () => Promise<unknown>): Promise<{ held: HeldRow; answer: Promise<unknown> }> {
  const held = await holdRow(usersSql, 'users', s.buyer.id);
  const answer = payment();
  await untilWaiting(`${prefix}users`, 'update users set balance_cents');
  return { held, answer };
}

/** Waits until a refund waits on the order's debit slot, where the payment's debit is being written. */
const refundWaiting = (): Promise<number> => untilWaiting(`${prefix}users`, 'insert into ledger_entries as l');

/**
 * Releases the debit, lets it commit, and cuts the connection of the confirm that follows while it
 * waits for inventory's allocations (once `first` is done): the confirm fails with its outcome unknown.
 */
async function debitThenFailedConfirm(debit: HeldRow, first?: Promise<unknown>): Promise<void> {
  const allocations = await holdTable(inventorySql, 'allocations');
  try {
    await debit.release();
    const confirm = await untilWaiting(`${prefix}inventory`, 'select product_id from allocations');
    await first;
    await admin`select pg_terminate_backend(${confirm})`;
  } finally {
    await allocations.release();
  }
}

/** Writes a debit of `orderId` in place of its void, as no code path of this version can. */
async function debitDespiteVoid(userId: string, orderId: string, sql: Sql = usersSql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`delete from ledger_entries where order_id = ${orderId} and kind = 'void'`;
    await tx`insert into ledger_entries (user_id, kind, order_id, amount_cents) values (${userId}, 'debit', ${orderId}, ${PRICE})`;
    await tx`update users set balance_cents = balance_cents - ${PRICE} where id = ${userId}`;
  });
}

async function balance(s: Sale): Promise<number> {
  return (await t.server.system.users.getUser(s.buyer.id)).balanceCents;
}

const ledger = (s: Sale) =>
  usersSql<{ kind: string; amount_cents: number }[]>`
    select kind, amount_cents from ledger_entries where order_id = ${s.orderId} order by id`;

const statusOf = async (orderId: string): Promise<string | undefined> =>
  (await ordersSql<{ status: string }[]>`select status from orders where id = ${orderId}`)[0]?.status;

/** What must hold after each interleaving: nothing kept, the unit back, the stores agree. */
async function expectNothingKept(s: Sale): Promise<void> {
  expect(await balance(s)).toBe(BALANCE);
  expect(await ledger(s)).toEqual([
    { kind: 'debit', amount_cents: PRICE },
    { kind: 'refund', amount_cents: PRICE },
  ]);
  expect((await t.server.system.inventory.stats(s.productId)).remaining).toBe(2);
  expect((await t.api.audit(s.productId)).violations).toEqual([]);
}

describe('a hold that expires between a payment\'s read and its debit', () => {
  it('is refunded by the payment when its confirm is refused: 410 HOLD_EXPIRED', async () => {
    const s = await sale();
    const { held, answer } = await debitWaiting(s, () => pay(s));
    await lapse(s.orderId);
    // The sweep expires the hold; its refund waits for the debit being written, then gives it back.
    const sweep = t.server.system.orders.sweepExpired();
    await refundWaiting();
    await held.release();
    expect((await sweep).expired).toBe(1);
    expect(await answer).toMatchObject({ status: 410, body: { code: 'HOLD_EXPIRED' } });
    await expectNothingKept(s);
  });

  it('is refunded by the payment when its confirm fails: orders says the order expired, so 410 HOLD_EXPIRED', async () => {
    const s = await sale();
    const { held, answer } = await debitWaiting(s, () => pay(s));
    await lapse(s.orderId);
    const sweep = t.server.system.orders.sweepExpired();
    await refundWaiting();
    // The confirm is cut once the sweep has refunded and marked the order expired.
    await debitThenFailedConfirm(held, sweep);
    expect((await sweep).expired).toBe(1);
    expect(await answer).toMatchObject({ status: 410, body: { code: 'HOLD_EXPIRED' } });
    await expectNothingKept(s);
  });

  it('is refunded by a retry after OUTCOME_UNKNOWN (the sweep marked the order only after the confirm failed)', async () => {
    const s = await sale();
    const key = randomUUID();
    const { held, answer } = await debitWaiting(s, () => pay(s, key));
    await lapse(s.orderId);
    // The sweep expires the hold, refunds the debit once it commits, then waits to mark the order.
    const orderRow = await holdRow(ordersSql, 'orders', s.orderId);
    const sweep = t.server.system.orders.sweepExpired();
    try {
      await refundWaiting();
      await debitThenFailedConfirm(held);
      // The order is still held in orders: the payment cannot say what happened.
      expect(await answer).toMatchObject({ status: 503, body: { code: 'OUTCOME_UNKNOWN' } });
      await untilWaiting(`${prefix}orders`, 'update orders set status');
    } finally {
      await orderRow.release();
    }
    expect((await sweep).expired).toBe(1);
    expect(await balance(s)).toBe(BALANCE);
    expect(await pay(s, key)).toMatchObject({ status: 410, body: { code: 'HOLD_EXPIRED' } });
    await expectNothingKept(s);
  });
});

describe('a hold cancelled between a payment\'s read and its debit', () => {
  it('is refunded by the payment when its confirm fails: 409 ORDER_NOT_PAYABLE', async () => {
    const s = await sale();
    const { held, answer } = await debitWaiting(s, () => pay(s));
    // The cancel releases the hold; its refund waits for the debit being written, then gives it back.
    const cancelled = t.api.call('POST', `/v1/orders/${s.orderId}/cancel`, { token: s.buyer.token });
    await refundWaiting();
    await debitThenFailedConfirm(held, cancelled);
    expect((await cancelled).status).toBe(200);
    expect(await answer).toMatchObject({ status: 409, body: { code: 'ORDER_NOT_PAYABLE' } });
    await expectNothingKept(s);
  });
});

describe('a debit that lands after its order ended, from a payment that never comes back', () => {
  it('is refunded by the sweeper once the payment\'s grace is over', async () => {
    const s = await sale();
    await lapse(s.orderId);
    expect((await t.server.system.orders.sweepExpired()).expired).toBe(1);
    expect(await statusOf(s.orderId)).toBe('expired');
    // A debit that reached the ledger although the order ended: the sweep's refund left a void,
    // which refuses it; one the ledger has anyway (written before voids existed, or by hand) is
    // what this step is for.
    expect(await t.server.system.users.debit({ userId: s.buyer.id, orderId: s.orderId, amountCents: PRICE })).toEqual({ ok: false, reason: 'REFUNDED' });
    await debitDespiteVoid(s.buyer.id, s.orderId);
    expect(await balance(s)).toBe(BALANCE - PRICE);

    const endedDebits = t.server.system.orders.endedDebits;
    const now = Date.now();
    // Within the grace a payment may still be making its debit: this order is not looked at yet
    // (the orders of the tests before may be, and were refunded already).
    expect((await endedDebits.sweep(now)).refunded).toBe(0);
    expect(await balance(s)).toBe(BALANCE - PRICE);
    const grace = 2 * t.config.storeDeadlineMs;
    const after = await endedDebits.sweep(now + grace);
    expect(after.refunded).toBe(1);
    await expectNothingKept(s);
    // Looked at once: a later sweep finds nothing more to do for it.
    expect((await endedDebits.sweep(now + 2 * grace)).refunded).toBe(0);
  });
});

describe("the sweeper's step for the debits of ended orders", () => {
  it('runs on its own: a debit that lands after the order expired is refunded one grace later', async () => {
    // A short deadline, so its grace (twice the deadline) passes within the test.
    const quick = await startTestServer({ storeDeadlineMs: 2_000, sweepIntervalMs: 100 });
    try {
      const [buyer] = await quick.api.createBuyers(1, BALANCE);
      if (!buyer) throw new Error('no buyer');
      const product = await quick.api.createProduct({ priceCents: PRICE, stock: 1, holdSeconds: 1 });
      const bought = await quick.api.purchase(buyer.token, product.id);
      expect(bought.status).toBe(201);
      const orderId = (bought.body['order'] as { id: string }).id;
      const { orders, users } = quick.server.system;
      const ordersDb = quick.server.system.stores.databases.orders;
      await waitFor('the sweeper to expire the order', async () => (await ordersDb<{ status: string }[]>`select status from orders where id = ${orderId}`)[0]?.status === 'expired');
      // A debit the ledger has although the order ended (see the test above).
      await debitDespiteVoid(buyer.id, orderId, quick.server.system.stores.databases.users);
      expect((await users.getUser(buyer.id)).balanceCents).toBe(BALANCE - PRICE);
      await waitFor('the sweeper to refund the debit', async () => (await users.getUser(buyer.id)).balanceCents === BALANCE);
      expect(orders.owedRefunds.count).toBe(0);
    } finally {
      await quick.stop();
    }
  });
});
