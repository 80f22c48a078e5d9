/**
 * A refund that comes before its debit records itself (a `void` in the order's debit slot), so a
 * debit still on its way (a payment whose call crossed a network after its caller gave up, or
 * after the sweeper expired the hold) is refused with `REFUNDED` and takes nothing, ever. Each
 * interleaving of a debit and a refund of one order is forced with a transaction the test holds
 * open on the real users database: whichever writes the slot first, money ends where it started
 * or stays debited exactly once with no refund, never debited and kept for an ended order.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { waitFor } from './support/drill.js';

const PRICE = 1_500;
const BALANCE = 10_000;

let t: TestServer;
let usersSql: Sql;

beforeAll(async () => {
  const prefix = `t_${randomUUID().slice(0, 8)}_`;
  t = await startTestServer({ databasePrefix: prefix, sweepIntervalMs: 60_000 });
  usersSql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}users`), 2, 'flashsale:refund-first-test');
  await usersSql`select 1`;
});
afterAll(async () => {
  await usersSql?.end({ timeout: 5 });
  await t?.stop();
});

async function buyer(): Promise<string> {
  const [created] = await t.api.createBuyers(1, BALANCE);
  if (!created) throw new Error('no buyer');
  return created.id;
}

const users = () => t.server.system.users;
const balanceOf = async (userId: string): Promise<number> => (await users().getUser(userId)).balanceCents;
const ledgerOf = (orderId: string) => usersSql<{ kind: string; amount_cents: number }[]>`
  select kind, amount_cents::int as amount_cents from ledger_entries where order_id = ${orderId} order by id`;

/** Whether a backend is waiting on a lock (the call the test made is parked behind the open transaction). */
const someoneWaits = async (): Promise<boolean> =>
  (await usersSql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)[0]?.n !== 0;

describe('a refund before its debit', () => {
  it('is recorded as a void, and the debit that arrives after it takes nothing', async () => {
    const userId = await buyer();
    const orderId = randomUUID();
    expect(await users().refund({ userId, orderId })).toBe(0);
    expect(await users().debit({ userId, orderId, amountCents: PRICE })).toEqual({ ok: false, reason: 'REFUNDED' });
    expect(await balanceOf(userId)).toBe(BALANCE);
    expect(await ledgerOf(orderId)).toEqual([{ kind: 'void', amount_cents: 0 }]);
    // A second refund and a retried debit change nothing either.
    expect(await users().refund({ userId, orderId })).toBe(0);
    expect(await users().debit({ userId, orderId, amountCents: PRICE })).toEqual({ ok: false, reason: 'REFUNDED' });
    expect(await users().ledgerOf([orderId])).toEqual([{ orderId, debitedCents: 0, refundedCents: 0, voided: true }]);
  });

  it('refuses a debit that waited on a refund being written (the refund commits first)', async () => {
    const userId = await buyer();
    const orderId = randomUUID();
    let debit: Promise<unknown> | undefined;
    await usersSql.begin(async (tx) => {
      await tx`insert into ledger_entries (user_id, kind, order_id, amount_cents) values (${userId}, 'void', ${orderId}, 0)`;
      debit = users().debit({ userId, orderId, amountCents: PRICE });
      await waitFor('the debit waiting on the slot', someoneWaits);
    });
    expect(await debit).toEqual({ ok: false, reason: 'REFUNDED' });
    expect(await balanceOf(userId)).toBe(BALANCE);
    expect(await ledgerOf(orderId)).toEqual([{ kind: 'void', amount_cents: 0 }]);
  });

  it('refunds a debit it waited on (the debit commits first): debited once, refunded once', async () => {
    const userId = await buyer();
    const orderId = randomUUID();
    let refund: Promise<number> | undefined;
    await usersSql.begin(async (tx) => {
      await tx`insert into ledger_entries (user_id, kind, order_id, amount_cents) values (${userId}, 'debit', ${orderId}, ${PRICE})`;
      await tx`update users set balance_cents = balance_cents - ${PRICE} where id = ${userId}`;
      refund = users().refund({ userId, orderId });
      await waitFor('the refund waiting on the slot', someoneWaits);
    });
    expect(await refund).toBe(PRICE);
    expect(await balanceOf(userId)).toBe(BALANCE);
    expect(await ledgerOf(orderId)).toEqual([
      { kind: 'debit', amount_cents: PRICE },
      { kind: 'refund', amount_cents: PRICE },
    ]);
    // A retried debit of the refunded order takes nothing again.
    expect(await users().debit({ userId, orderId, amountCents: PRICE })).toEqual({ ok: false, reason: 'REFUNDED' });
    expect(await balanceOf(userId)).toBe(BALANCE);
  });
});

describe('a payment whose hold expired and was refunded before its debit', () => {
  it('is answered 410 HOLD_EXPIRED and takes nothing; the audit finds the money whole', async () => {
    const [me] = await t.api.createBuyers(1, BALANCE);
    if (!me) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: PRICE, stock: 2, holdSeconds: 300 });
    const held = await t.api.purchase(me.token, product.id);
    expect(held.status).toBe(201);
    const orderId = (held.body['order'] as { id: string }).id;
    // The hold ended (here: cancelled, which refunds) while a payment's debit was still on its way.
    expect((await t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token: me.token })).status).toBe(200);
    expect(await users().debit({ userId: me.id, orderId, amountCents: PRICE })).toEqual({ ok: false, reason: 'REFUNDED' });
    const pay = await t.api.call('POST', `/v1/orders/${orderId}/pay`, { token: me.token, headers: { 'idempotency-key': randomUUID() } });
    expect(pay.body['code']).toBe('ORDER_NOT_PAYABLE');
    expect(await balanceOf(me.id)).toBe(BALANCE);
    const audit = await t.api.audit(product.id);
    expect(audit.violations).toEqual([]);
  });
});
