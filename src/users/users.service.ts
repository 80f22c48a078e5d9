/**
 * The users module: accounts, balances in integer cents, the append-only ledger, and the
 * sessions buyers sign in with (`sessions.ts`). Every change of a balance is one ledger row
 * written in the same transaction; a debit and its refund are keyed by the order id
 * (`unique (order_id, kind)`), so retries happen once. A new user and their first session are
 * written in one statement.
 */
import { transaction, type Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import { onStore } from '../infra/store-errors.js';
import type { Tokens } from '../infra/tokens.js';
import { Sessions, type NewSession } from './sessions.js';
import type {
  AccessToken,
  DebitOutcome,
  IssuedUser,
  LedgerMovement,
  OrderLedger,
  RevocationPage,
  RevokedSession,
  User,
  UsersClient,
} from './users.client.js';

interface UserRow {
  id: string;
  name: string;
  balance_cents: number;
  created_at: Date;
}

export interface UsersOptions {
  readonly sql: Sql;
  readonly tokens: Tokens;
  /** How long an access token is accepted after it is issued (`TOKEN_TTL_SECONDS`). */
  readonly tokenTtlSeconds: number;
  readonly newId: () => string;
}

/** Thrown inside a transaction to roll it back with a refusal rather than a fault. */
class Refused extends Error {
  override readonly name = 'Refused';
  constructor(readonly balanceCents: number) {
    super('insufficient funds');
  }
}

function toUser(row: UserRow): User {
  return { id: row.id, name: row.name, balanceCents: row.balance_cents, createdAt: row.created_at.toISOString() };
}

function issued(session: NewSession): IssuedUser {
  return { id: session.userId, ...session.access, refreshToken: session.refreshToken };
}

export class UsersService implements UsersClient {
  private readonly sessions: Sessions;

  constructor(private readonly options: UsersOptions) {
    this.sessions = new Sessions(options);
  }

  signUp(name: string): Promise<IssuedUser> {
    return onStore('users', async () => {
      const { sessions: [session], accessUntil } = this.sessions.issue([this.options.newId()]);
      if (!session) throw new Error('no session issued');
      await this.options.sql`
        with created as (insert into users (id, name) values (${session.userId}, ${name}) returning id)
        insert into sessions (id, user_id, refresh_hash, access_until)
        select ${session.id}, id, decode(${session.refreshHash}, 'hex'), ${accessUntil} from created`;
      return issued(session);
    });
  }

  createMany(count: number, balanceCents: number, namePrefix: string): Promise<IssuedUser[]> {
    return onStore('users', async () => {
      const { sessions, accessUntil } = this.sessions.issue(Array.from({ length: count }, () => this.options.newId()));
      const ids = sessions.map((session) => session.userId);
      const names = ids.map((_, index) => `${namePrefix}${index + 1}`);
      // One statement for the whole batch: 10,000 buyers and their sessions in one round trip.
      await this.options.sql`
        with created as (
          insert into users (id, name, balance_cents)
          select id, name, ${balanceCents}::bigint
            from unnest(${ids}::uuid[], ${names}::text[]) as batch (id, name)
          returning id
        )
        insert into sessions (id, user_id, refresh_hash, access_until)
        select batch.session_id, created.id, decode(batch.refresh_hash, 'hex'), ${accessUntil}
          from unnest(${sessions.map((session) => session.id)}::uuid[], ${ids}::uuid[], ${sessions.map((session) => session.refreshHash)}::text[])
               as batch (session_id, user_id, refresh_hash)
          join created on created.id = batch.user_id`;
      return sessions.map(issued);
    });
  }

  refresh(refreshToken: string): Promise<AccessToken> {
    return this.sessions.refresh(refreshToken);
  }

  signOut(userId: string, sessionId: string): Promise<RevokedSession | undefined> {
    return this.sessions.signOut(userId, sessionId);
  }

  revokeUser(userId: string): Promise<RevokedSession[]> {
    return this.sessions.revokeUser(userId);
  }

  revokedSessions(after: string | undefined): Promise<RevocationPage> {
    return this.sessions.revokedSince(after);
  }

  getUser(id: string): Promise<User> {
    return onStore('users', async () => {
      const [row] = await this.options.sql<UserRow[]>`select * from users where id = ${id}`;
      if (!row) throw new DomainError('USER_NOT_FOUND', undefined, { userId: id });
      return toUser(row);
    }, undefined, false);
  }

  debit({ userId, orderId, amountCents }: LedgerMovement): Promise<DebitOutcome> {
    return onStore('users', async () => {
      if (amountCents === 0) return { ok: true, balanceCents: (await this.getUser(userId)).balanceCents };
      try {
        return await transaction(this.options.sql, async (tx) => {
          // The ledger row first, in the order's debit slot (shared with a refund's void): a
          // concurrent debit or refund of the same order waits here on the slot's unique index.
          const [entry] = await tx<{ id: number }[]>`
            insert into ledger_entries (user_id, kind, order_id, amount_cents)
            select ${userId}, 'debit', ${orderId}, ${amountCents} where exists (select 1 from users where id = ${userId})
            on conflict (order_id) where kind in ('debit', 'void') do nothing
            returning id`;
          if (!entry) {
            // No such user; or the slot is taken: by this order's debit (a retry: nothing more to
            // take, unless it was refunded since) or by a refund that came first (a void).
            const [found] = await tx<{ balance_cents: number; slot: string | null; refunded: boolean }[]>`
              select u.balance_cents,
                     (select kind from ledger_entries where order_id = ${orderId} and kind in ('debit', 'void')) as slot,
                     exists (select 1 from ledger_entries where order_id = ${orderId} and kind = 'refund') as refunded
                from users u where u.id = ${userId}`;
            if (!found) throw new DomainError('USER_NOT_FOUND', undefined, { userId });
            if (found.slot === 'void' || found.refunded) return { ok: false, reason: 'REFUNDED' };
            return { ok: true, balanceCents: found.balance_cents };
          }
          const [user] = await tx<{ balance_cents: number }[]>`
            update users set balance_cents = balance_cents - ${amountCents}
             where id = ${userId} and balance_cents >= ${amountCents}
            returning balance_cents`;
          if (user) return { ok: true, balanceCents: user.balance_cents };
          const [current] = await tx<{ balance_cents: number }[]>`select balance_cents from users where id = ${userId}`;
          throw new Refused(current?.balance_cents ?? 0);
        });
      } catch (error) {
        if (error instanceof Refused) return { ok: false, reason: 'INSUFFICIENT_FUNDS', balanceCents: error.balanceCents };
        throw error;
      }
    }, orderId);
  }

  refund({ userId, orderId }: Pick<LedgerMovement, 'userId' | 'orderId'>): Promise<number> {
    return onStore('users', async () => {
      // One statement, so one round trip and its own transaction: the sweeper calls this for every
      // expired hold, and most were never paid. The void takes the order's debit slot, or meets
      // the debit there (waiting for one being written, then seeing it as the conflict, committed,
      // whatever this statement's snapshot), and that debit is refunded.
      const [row] = await this.options.sql<{ refunded: number }[]>`
        with slot as (
          insert into ledger_entries as l (user_id, kind, order_id, amount_cents)
          select ${userId}, 'void', ${orderId}, 0 where exists (select 1 from users where id = ${userId})
          on conflict (order_id) where kind in ('debit', 'void') do update set order_id = excluded.order_id
          returning l.user_id, l.kind, l.amount_cents
        ), entry as (
          insert into ledger_entries (user_id, kind, order_id, amount_cents)
          select user_id, 'refund', ${orderId}, amount_cents from slot where kind = 'debit' and user_id = ${userId}
          on conflict (order_id, kind) do nothing
          returning amount_cents
        ), credited as (
          update users set balance_cents = balance_cents + entry.amount_cents from entry where users.id = ${userId}
        )
        select coalesce((select amount_cents from entry), 0)::int8 as refunded`;
      return row?.refunded ?? 0;
    }, orderId);
  }

  debitsNotRefunded(orderIds: readonly string[]): Promise<string[]> {
    return onStore('users', async () => {
      if (orderIds.length === 0) return [];
      // Both lookups use the ledger's unique key (order_id, kind): one index probe per id.
      const rows = await this.options.sql<{ order_id: string }[]>`
        select debit.order_id from ledger_entries debit
         where debit.order_id = any(${this.options.sql.array([...orderIds])}::uuid[]) and debit.kind = 'debit'
           and not exists (select 1 from ledger_entries refund where refund.order_id = debit.order_id and refund.kind = 'refund')`;
      return rows.map((row) => row.order_id);
    }, undefined, false);
  }

  ledgerOf(orderIds: readonly string[]): Promise<OrderLedger[]> {
    return onStore('users', async () => {
      if (orderIds.length === 0) return [];
      const rows = await this.options.sql<{ order_id: string; debited: number; refunded: number; voided: boolean }[]>`
        select order_id,
               coalesce(sum(amount_cents) filter (where kind = 'debit'), 0)::int8 as debited,
               coalesce(sum(amount_cents) filter (where kind = 'refund'), 0)::int8 as refunded,
               bool_or(kind = 'void') as voided
          from ledger_entries
         where order_id = any(${this.options.sql.array([...orderIds])}::uuid[]) and kind in ('debit', 'refund', 'void')
         group by order_id`;
      return rows.map((row) => ({ orderId: row.order_id, debitedCents: Number(row.debited), refundedCents: Number(row.refunded), voided: row.voided }));
    }, undefined, false);
  }

  credit(userId: string, amountCents: number): Promise<User> {
    return onStore('users', async () => {
      return transaction(this.options.sql, async (tx) => {
        const [row] = await tx<UserRow[]>`
          update users set balance_cents = balance_cents + ${amountCents} where id = ${userId} returning *`;
        if (!row) throw new DomainError('USER_NOT_FOUND', undefined, { userId });
        await tx`insert into ledger_entries (user_id, kind, amount_cents) values (${userId}, 'credit', ${amountCents})`;
        return toUser(row);
      });
    });
  }
}
