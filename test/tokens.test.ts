/**
 * Tokens that end and a way back in: an access token expires after `TOKEN_TTL_SECONDS` and is
 * refused at once (cached or not), the refresh token gets a working one, a sign-out or an admin's
 * revocation is refused by a second server on the same databases once it has polled (and at once
 * by the server that ended it), a forged or altered token is refused, and a token of the
 * pre-session format is no access token but still a way back into its account. Every refused
 * request leaves every table of every module database as it was.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, dropDatabases, ensureDatabases } from '../src/infra/database.js';
import { Tokens } from '../src/infra/tokens.js';
import type { Answer } from './support/api.js';
import { snapshotStores } from './support/snapshot.js';
import { startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';

interface Issued {
  readonly id: string;
  readonly token: string;
  readonly expiresAt: string;
  readonly refreshToken: string;
}

/** A server and a second one on the same databases, each polling revocations every 100 ms. */
let a: TestServer;
let b: TestServer;
/** A server whose access tokens live one second. */
let brief: TestServer;
let productId: string;

beforeAll(async () => {
  a = await startTestServer({ revocationRefreshMs: 100 });
  b = await startTestServer({ revocationRefreshMs: 100, databasePrefix: a.config.databasePrefix });
  // A third server: pools of 2 keep the file inside its PostgreSQL budget (test/support/pg-budget.ts).
  brief = await startTestServer({ tokenTtlSeconds: 1, dbPoolSize: 2 });
  productId = (await a.api.createProduct({ stock: 1_000 })).id;
});
afterAll(async () => {
  await b?.stop({ keepData: true });
  await a?.stop();
  await brief?.stop();
});

async function signUp(t: TestServer): Promise<Issued> {
  const answer = await t.api.call<Issued>('POST', '/v1/users', { body: { name: 'Ada' } });
  expect(answer.status).toBe(201);
  return answer.body;
}

async function refresh(t: TestServer, refreshToken: string): Promise<Answer> {
  return t.api.call('POST', '/v1/tokens', { body: { refreshToken } });
}

/** A purchase that must be refused with `code` and leave every store as it was. */
async function refusedWithoutTrace(t: TestServer, token: string, code: string, product = productId): Promise<void> {
  const before = await snapshotStores(t.server.system.stores.databases);
  const answer = await t.api.purchase(token, product, 1, { 'idempotency-key': randomUUID() });
  expect(answer.status).toBe(401);
  expect(answer.body).toMatchObject({ code });
  expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
}

/** A token of the format issued before sessions: `<userId>.<HMAC-SHA256 of "buyer:<userId>">`. */
function legacyToken(t: TestServer, userId: string): string {
  return `${userId}.${createHmac('sha256', t.config.tokenSecret ?? '').update(`buyer:${userId}`).digest('base64url')}`;
}

/** An account as it was before sessions: no session, and a pre-session token it may still use. */
async function accountFromBefore(t: TestServer): Promise<string> {
  const id = randomUUID();
  await t.server.system.stores.databases.users`
    insert into users (id, name, balance_cents, legacy_token_usable) values (${id}, 'from before', 1000000, true)`;
  return id;
}

describe('an access token', () => {
  it('is refused as TOKEN_EXPIRED by the verifier the moment its expiry passes, though it verified and was cached', () => {
    let now = 1_000_000;
    const tokens = new Tokens('a-secret-of-at-least-32-characters!!', () => now);
    const claims = { userId: randomUUID(), sessionId: randomUUID(), expiresAtMs: now + 1_000 };
    const token = tokens.sign(claims);
    expect(tokens.verify(token)).toEqual({ ok: true, ...claims });
    now += 999;
    expect(tokens.verify(token)).toMatchObject({ ok: true });
    now += 1;
    expect(tokens.verify(token)).toEqual({ ok: false, reason: 'expired' });
    expect(tokens.verify(token)).toEqual({ ok: false, reason: 'expired' });
  });

  it('expires after TOKEN_TTL_SECONDS: 401 TOKEN_EXPIRED at once, nothing done, and the refresh token gets a working one', async () => {
    const product = await brief.api.createProduct({ stock: 10 });
    const buyer = await signUp(brief);
    expect(Date.parse(buyer.expiresAt) - Date.now()).toBeLessThanOrEqual(1_000);
    // Used (and so cached) while it is valid.
    expect((await brief.api.call('GET', '/v1/me', { token: buyer.token })).status).toBe(200);
    await sleep(Math.max(0, Date.parse(buyer.expiresAt) - Date.now()) + 20);
    const me = await brief.api.call('GET', '/v1/me', { token: buyer.token });
    expect(me.status).toBe(401);
    expect(me.body).toMatchObject({ code: 'TOKEN_EXPIRED' });
    await refusedWithoutTrace(brief, buyer.token, 'TOKEN_EXPIRED', product.id);

    const refreshed = await refresh(brief, buyer.refreshToken);
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers['cache-control']).toBe('no-store');
    const fresh = refreshed.body as { token: string; expiresAt: string };
    expect(Date.parse(fresh.expiresAt)).toBeGreaterThan(Date.now());
    const bought = await brief.api.purchase(fresh.token, product.id);
    expect(bought.status).toBe(201);
    expect(bought.body).toMatchObject({ order: { buyerId: buyer.id } });
  });

  it('is refused UNAUTHORIZED when forged or altered in any part, with nothing done', async () => {
    const buyer = await signUp(a);
    const [userId = '', sessionId = '', expiry = '', signature = ''] = buyer.token.split('.');
    const [other] = await a.api.createBuyers(1);
    const otherUserId = other?.id ?? '';
    const flip = (text: string): string => `${text.slice(0, -1)}${text.endsWith('A') ? 'B' : 'A'}`;
    const altered = [
      // Another buyer's id, so the purchase would be theirs.
      `${otherUserId}.${sessionId}.${expiry}.${signature}`,
      // Another session, so a revocation would miss it.
      `${userId}.${randomUUID()}.${expiry}.${signature}`,
      // A later expiry.
      `${userId}.${sessionId}.${Number(expiry) + 3_600_000}.${signature}`,
      `${userId}.${sessionId}.${expiry}.${flip(signature)}`,
      // Well formed, signed under another secret.
      new Tokens('another-secret-of-at-least-32-characters').sign({ userId, sessionId, expiresAtMs: Number(expiry) }),
      `${userId}.${sessionId}.${expiry}`,
      `${buyer.token}.x`,
    ];
    for (const token of altered) await refusedWithoutTrace(a, token, 'UNAUTHORIZED');
    expect((await a.api.purchase(buyer.token, productId)).status).toBe(201);
  });
});

describe('a session ended', () => {
  it('by signing out is refused at once where it was ended, and by a second server once it has polled, with nothing done', async () => {
    const [buyer] = (await a.api.createBuyers(1)) as unknown as Issued[];
    if (!buyer) throw new Error('no buyer');
    expect(buyer.refreshToken).toEqual(expect.any(String));
    // Both servers have verified (and cached) the token.
    expect((await a.api.purchase(buyer.token, productId)).status).toBe(201);
    expect((await b.api.purchase(buyer.token, productId)).status).toBe(201);
    const second = (await refresh(b, buyer.refreshToken)).body as { token: string };

    const out = await a.api.call('POST', '/v1/me/sign-out', { token: buyer.token });
    // A poll that begins after the sign-out committed (one begun before it may have missed it).
    const polled = b.server.app.revokedSessions.nextPoll();
    expect(out.status).toBe(200);
    expect(out.body).toEqual({ revokedSessions: 1 });
    await refusedWithoutTrace(a, buyer.token, 'TOKEN_REVOKED');

    await polled;
    await refusedWithoutTrace(b, buyer.token, 'TOKEN_REVOKED');
    // Every access token issued from the session, and its refresh token, on either server.
    await refusedWithoutTrace(b, second.token, 'TOKEN_REVOKED');
    const again = await refresh(b, buyer.refreshToken);
    expect(again.status).toBe(401);
    expect(again.body).toMatchObject({ code: 'TOKEN_REVOKED' });
  });

  it("by an admin's revocation of the user ends every session of theirs, on both servers", async () => {
    const buyer = await signUp(a);
    expect((await b.api.purchase(buyer.token, productId)).status).toBe(201);
    const [bystander] = await a.api.createBuyers(1);

    const revoked = await a.api.admin('POST', `/v1/admin/users/${buyer.id}/revoke`);
    // A poll that begins after the revocation committed (one begun before it may have missed it).
    const polled = b.server.app.revokedSessions.nextPoll();
    expect(revoked.status).toBe(200);
    expect(revoked.body).toEqual({ revokedSessions: 1 });
    await refusedWithoutTrace(a, buyer.token, 'TOKEN_REVOKED');
    await polled;
    await refusedWithoutTrace(b, buyer.token, 'TOKEN_REVOKED');
    expect((await refresh(b, buyer.refreshToken)).body).toMatchObject({ code: 'TOKEN_REVOKED' });
    expect((await a.api.admin('POST', `/v1/admin/users/${buyer.id}/revoke`)).body).toEqual({ revokedSessions: 0 });
    // Nobody else's.
    expect((await b.api.purchase(bystander?.token ?? '', productId)).status).toBe(201);
  });

  it('is seen by the second server even when its transaction commits after a later revocation was seen', async () => {
    const [slow, quick] = (await a.api.createBuyers(2)) as unknown as Issued[];
    if (!slow || !quick) throw new Error('no buyers');
    expect((await b.api.purchase(slow.token, productId)).status).toBe(201);
    await a.server.system.stores.databases.users.begin(async (tx) => {
      // A revocation whose transaction stays open while a later one commits and is polled.
      await tx`update sessions set revoked_at = now(), revoked_xid = pg_current_xact_id() where user_id = ${slow.id}`;
      expect((await a.api.admin('POST', `/v1/admin/users/${quick.id}/revoke`)).body).toEqual({ revokedSessions: 1 });
      // A poll that begins after that revocation committed (one begun before it may have missed it).
      await b.server.app.revokedSessions.nextPoll();
      await refusedWithoutTrace(b, quick.token, 'TOKEN_REVOKED');
    });
    await b.server.app.revokedSessions.nextPoll();
    await refusedWithoutTrace(b, slow.token, 'TOKEN_REVOKED');
  });

  it('is forgotten by the server once every access token of it has expired', async () => {
    const buyer = await signUp(brief);
    const known = brief.server.app.revokedSessions.size;
    expect((await brief.api.call('POST', '/v1/me/sign-out', { token: buyer.token })).status).toBe(200);
    expect(brief.server.app.revokedSessions.size).toBe(known + 1);
    await sleep(Math.max(0, Date.parse(buyer.expiresAt) - Date.now()) + 20);
    await brief.server.app.revokedSessions.nextPoll();
    expect(brief.server.app.revokedSessions.size).toBe(known);
    expect((await brief.api.call('GET', '/v1/me', { token: buyer.token })).body).toMatchObject({ code: 'TOKEN_EXPIRED' });
  });
});

describe('a token of the pre-session format', () => {
  it('is no longer an access token (TOKEN_EXPIRED, nothing done) but is exchanged, again and again, for tokens of one session', async () => {
    const id = await accountFromBefore(a);
    const old = legacyToken(a, id);
    await refusedWithoutTrace(a, old, 'TOKEN_EXPIRED');

    const first = await refresh(a, old);
    expect(first.status).toBe(200);
    const token = (first.body as { token: string }).token;
    const bought = await a.api.purchase(token, productId);
    expect(bought.status).toBe(201);
    expect(bought.body).toMatchObject({ order: { buyerId: id } });
    const second = (await refresh(b, old)).body as { token: string };
    expect(second.token.split('.')[1]).toBe(token.split('.')[1]);
    expect((await b.api.purchase(second.token, productId)).status).toBe(201);
  });

  it('ends with its session when the buyer signs out', async () => {
    const old = legacyToken(a, await accountFromBefore(a));
    const token = ((await refresh(a, old)).body as { token: string }).token;
    expect((await a.api.call('POST', '/v1/me/sign-out', { token })).status).toBe(200);
    const after = await refresh(b, old);
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ code: 'TOKEN_REVOKED' });
  });

  it("ends when an admin revokes the user, even if it was never exchanged, and nothing is written for it", async () => {
    const id = await accountFromBefore(a);
    expect((await a.api.admin('POST', `/v1/admin/users/${id}/revoke`)).body).toEqual({ revokedSessions: 0 });
    const before = await snapshotStores(a.server.system.stores.databases);
    const after = await refresh(a, legacyToken(a, id));
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ code: 'TOKEN_REVOKED' });
    expect(await snapshotStores(a.server.system.stores.databases)).toEqual(before);
  });

  it('is refused for an account made after sessions (none was ever issued), and a forged one is UNAUTHORIZED', async () => {
    const buyer = await signUp(a);
    expect((await refresh(a, legacyToken(a, buyer.id))).status).toBe(401);
    const forged = `${buyer.id}.${'A'.repeat(43)}`;
    expect((await refresh(a, forged)).body).toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await a.api.purchase(forged, productId)).body).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('may be exchanged for every account that existed when the sessions migration ran, and for no account made after', async () => {
    const name = `${a.config.databasePrefix}legacy_migration`;
    await ensureDatabases(TEST_DATABASE_URL, [name]);
    const sql = connect(databaseUrl(TEST_DATABASE_URL, name), 1, 'flashsale:tokens-test');
    try {
      const migration = async (file: string): Promise<void> => {
        await sql.unsafe(await readFile(new URL(`../src/users/migrations/${file}`, import.meta.url), 'utf8'));
      };
      await migration('001_users.sql');
      const before = randomUUID();
      await sql`insert into users (id, name) values (${before}, 'before')`;
      await migration('002_sessions.sql');
      const after = randomUUID();
      await sql`insert into users (id, name) values (${after}, 'after')`;
      const rows = await sql<{ id: string; legacy_token_usable: boolean }[]>`select id, legacy_token_usable from users`;
      expect(Object.fromEntries(rows.map((row) => [row.id, row.legacy_token_usable]))).toEqual({ [before]: true, [after]: false });
    } finally {
      await sql.end();
      await dropDatabases(TEST_DATABASE_URL, [name]);
    }
  });
});
