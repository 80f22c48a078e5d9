/**
 * The sweeper never stops for one failure. With users' database refusing its role (a real
 * outage of that module only), expired holds still come back to stock, inventory's own sweep still
 * runs, and the refund of a debited-then-expired order is recorded owed in orders' database; once
 * users is back a later sweep makes it, exactly once. And an order the store refuses to change
 * (a bad row) is skipped: the rest of its batch, and the other steps, go on.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { waitFor } from './support/drill.js';

const PRICE = 2_500;
const BALANCE = 10_000;

let t: TestServer;
let admin: Sql;
let prefix: string;
let role: string;
let inventorySql: Sql;
let ordersSql: Sql;

beforeAll(async () => {
  // Users' database belongs to a role only users connects as: refusing that role is an outage of
  // users alone, while inventory and orders (and this test's admin connection) go on.
  prefix = `t_${randomBytes(5).toString('hex')}_`;
  role = `${prefix}users`;
  admin = connect(TEST_DATABASE_URL, 1, 'flashsale:sweeper-test');
  await admin.unsafe(`create role "${role}" login`);
  await admin.unsafe(`create database "${prefix}users" owner "${role}"`);
  const asRole = new URL(databaseUrl(TEST_DATABASE_URL, `${prefix}users`));
  asRole.username = role;
  asRole.password = '';
  t = await startTestServer({
    databasePrefix: prefix,
    moduleDatabaseUrls: { users: asRole.toString(), inventory: undefined, orders: undefined },
    sweepIntervalMs: 100,
  });
  inventorySql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}inventory`), 1, 'flashsale:sweeper-test');
  ordersSql = connect(databaseUrl(TEST_DATABASE_URL, `${prefix}orders`), 1, 'flashsale:sweeper-test');
  // Connected (and the server's types read) before the first statement that sends an array.
  await Promise.all([inventorySql`select 1`, ordersSql`select 1`]);
});
afterAll(async () => {
  await inventorySql?.end({ timeout: 5 });
  await ordersSql?.end({ timeout: 5 });
  try {
    await t?.stop();
  } finally {
    if (admin) {
      // The role owns users' database: it goes first (already gone when the server stopped cleanly).
      await admin.unsafe(`drop database if exists "${prefix}users" with (force)`);
      await admin.unsafe(`drop role if exists "${role}"`);
      await admin.end({ timeout: 5 });
    }
  }
});

/** Refuses users' role and cuts its sessions; or lets it log in again. */
async function usersReachable(reachable: boolean): Promise<void> {
  await admin.unsafe(`alter role "${role}" ${reachable ? 'login' : 'nologin'}`);
  if (!reachable) await admin`select pg_terminate_backend(pid) from pg_stat_activity where usename = ${role}`;
}

/** Makes these holds and their orders past their expiry now, in inventory's and orders' databases. */
async function lapse(ids: readonly string[], secondsAgo = 1): Promise<void> {
  const at = new Date(Date.now() - secondsAgo * 1000);
  await inventorySql`update allocations set expires_at = ${at} where id = any(${inventorySql.array([...ids])}::uuid[])`;
  await ordersSql`update orders set expires_at = ${at} where id = any(${ordersSql.array([...ids])}::uuid[])`;
}

async function purchase(token: string, productId: string): Promise<string> {
  const answer = await t.api.purchase(token, productId);
  expect(answer.status).toBe(201);
  return (answer.body['order'] as { id: string }).id;
}

/** A hold inventory made whose order was never recorded (a crash between the two): only inventory's sweep returns it. */
async function orphanHold(productId: string, buyerId: string): Promise<string> {
  const id = randomUUID();
  const reserved = await t.server.system.inventory.reserve({ allocationId: id, productId, buyerId, quantity: 1 });
  expect(reserved.ok).toBe(true);
  return id;
}

const remaining = async (productId: string): Promise<number> => (await t.server.system.inventory.stats(productId)).remaining;
const statusOf = async (orderId: string): Promise<string | undefined> =>
  (await ordersSql<{ status: string }[]>`select status from orders where id = ${orderId}`)[0]?.status;
const owed = async (): Promise<{ order_id: string; attempts: number }[]> =>
  ordersSql`select order_id, attempts from owed_refunds order by order_id`;
const owedGauge = async (): Promise<string | undefined> =>
  /^flashsale_refunds_owed (\d+)$/m.exec(String((await t.api.call('GET', '/metrics')).body))?.[1];

describe('the sweeper while users is unreachable', () => {
  it('returns expired holds to stock, owes the refund of a debited order, and makes it once users is back', async () => {
    const [buyer] = await t.api.createBuyers(1, BALANCE);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: PRICE, stock: 3, perBuyerLimit: 3, holdSeconds: 300 });
    const debited = await purchase(buyer.token, product.id);
    const neverPaid = await purchase(buyer.token, product.id);
    const orphan = await orphanHold(product.id, buyer.id);
    // A payment that debited and died before its confirm: the hold expires with the money taken.
    await t.server.system.users.debit({ userId: buyer.id, orderId: debited, amountCents: PRICE });
    expect(await remaining(product.id)).toBe(0);

    await usersReachable(false);
    try {
      expect((await t.api.call('GET', '/v1/me', { token: buyer.token })).body).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await lapse([debited, neverPaid, orphan]);
      // Every unit back, the orphan's by inventory's own sweep, and both orders expired, while users still refuses.
      await waitFor(
        'the units back in stock and the orders expired',
        async () => (await remaining(product.id)) === 3 && (await statusOf(debited)) === 'expired' && (await statusOf(neverPaid)) === 'expired',
      );
      // Orders cannot tell which was debited: both refunds are owed, and later sweeps try them.
      expect((await owed()).map((row) => row.order_id).sort()).toEqual([debited, neverPaid].sort());
      await waitFor('a later sweep to try an owed refund again', async () => (await owed()).some((row) => row.attempts >= 2));
      expect(await owedGauge()).toBe('2');
      expect((await t.api.call('GET', '/v1/me', { token: buyer.token })).status).toBe(503);
    } finally {
      await usersReachable(true);
    }

    await waitFor('the owed refunds made', async () => (await owed()).length === 0);
    expect(await owedGauge()).toBe('0');
    const me = await t.api.call<{ balanceCents: number }>('GET', '/v1/me', { token: buyer.token });
    expect(me.body.balanceCents).toBe(BALANCE);
    const ledger = await t.server.system.stores.databases.users<{ kind: string; order_id: string; amount_cents: number }[]>`
      select kind, order_id, amount_cents from ledger_entries where user_id = ${buyer.id} order by id`;
    expect(ledger).toEqual([
      { kind: 'debit', order_id: debited, amount_cents: PRICE },
      { kind: 'refund', order_id: debited, amount_cents: PRICE },
      // The order never paid: its refund found no debit and left a void in its place.
      { kind: 'void', order_id: neverPaid, amount_cents: 0 },
    ]);
    expect((await t.api.audit(product.id)).violations).toEqual([]);
  });
});

describe('an order the store refuses to change', () => {
  it('is skipped: the rest of its batch expires, and inventory sweeps, while it stays for the next sweep', async () => {
    const [buyer] = await t.api.createBuyers(1, BALANCE);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: PRICE, stock: 3, perBuyerLimit: 3, holdSeconds: 300 });
    const bad = await purchase(buyer.token, product.id);
    const good = await purchase(buyer.token, product.id);
    const orphan = await orphanHold(product.id, buyer.id);
    // The bad order is the batch's first (the oldest expiry): failing on it must not end the batch.
    await ordersSql.unsafe(`
      create function refuse_bad_order() returns trigger language plpgsql as $$
      begin raise exception 'this order cannot change'; end $$`);
    await ordersSql.unsafe(`
      create trigger refuse_bad_order before update on orders for each row
      when (old.id = '${bad}' and new.status <> old.status) execute function refuse_bad_order()`);
    try {
      await lapse([bad], 5);
      await lapse([good, orphan]);
      await waitFor('the good order expired and the orphan back', async () => (await statusOf(good)) === 'expired' && (await remaining(product.id)) === 3);
      expect(await statusOf(bad)).toBe('held');
    } finally {
      await ordersSql.unsafe('drop trigger refuse_bad_order on orders');
      await ordersSql.unsafe('drop function refuse_bad_order');
    }
    await waitFor('the bad order expired on a later sweep', async () => (await statusOf(bad)) === 'expired');
    expect((await t.api.audit(product.id)).violations).toEqual([]);
  });
});
