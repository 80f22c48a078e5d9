/**
 * The users module: accounts, balances in integer cents, the append-only ledger, and bearer
 * tokens. Every change of a balance is one ledger row written in the same transaction; a debit
 * and its refund are keyed by the order id (`unique (order_id, kind)`), so retries happen once.
 */
import { transaction, type Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import { onStore } from '../infra/store-errors.js';
import type { Tokens } from '../infra/tokens.js';
import type { DebitOutcome, IssuedUser, LedgerMovement, User, UsersClient } from './users.client.js';

interface UserRow {
  id: string;
  name: string;
  balance_cents: number;
  created_at: Date;
}

export interface UsersOptions {
  readonly sql: Sql;
  readonly tokens: Tokens;
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

export class UsersService implements UsersClient {
  constructor(private readonly options: UsersOptions) {}

  signUp(name: string): Promise<IssuedUser> {
    return onStore('users', async () => {
      const id = this.options.newId();
      await this.options.sql`insert into users (id, name) values (${id}, ${name})`;
      return { id, token: this.options.tokens.sign(id) };
    });
  }

  createMany(count: number, balanceCents: number, namePrefix: string): Promise<IssuedUser[]> {
    return onStore('users', async () => {
      const ids = Array.from({ length: count }, () => this.options.newId());
      const names = ids.map((_, index) => `${namePrefix}${index + 1}`);
      // One statement for the whole batch: 10,000 buyers in one round trip.
      await this.options.sql`
        insert into users (id, name, balance_cents)
        select id, name, ${balanceCents}::bigint
          from unnest(${ids}::uuid[], ${names}::text[]) as batch (id, name)`;
      return ids.map((id) => ({ id, token: this.options.tokens.sign(id) }));
    });
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
          // The ledger row first: a concurrent debit of the same order waits here on the unique key,
          // then finds it taken and takes nothing more.
          const [entry] = await tx<{ id: number }[]>`
            insert into ledger_entries (user_id, kind, order_id, amount_cents)
            select ${userId}, 'debit', ${orderId}, ${amountCents} where exists (select 1 from users where id = ${userId})
            on conflict (order_id, kind) do nothing
            returning id`;
          if (!entry) {
            // Either no such user, or this order was debited already (a retry): nothing more to take.
            const [user] = await tx<{ balance_cents: number }[]>`select balance_cents from users where id = ${userId}`;
            if (!user) throw new DomainError('USER_NOT_FOUND', undefined, { userId });
            return { ok: true, balanceCents: user.balance_cents };
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
      // expired hold, and most were never paid (nothing to insert, nothing to credit).
      const [row] = await this.options.sql<{ refunded: number }[]>`
        with entry as (
          insert into ledger_entries (user_id, kind, order_id, amount_cents)
          select user_id, 'refund', order_id, amount_cents from ledger_entries
           where order_id = ${orderId} and kind = 'debit' and user_id = ${userId}
          on conflict (order_id, kind) do nothing
          returning amount_cents
        ), credited as (
          update users set balance_cents = balance_cents + entry.amount_cents from entry where users.id = ${userId}
        )
        select coalesce((select amount_cents from entry), 0)::int8 as refunded`;
      return row?.refunded ?? 0;
    }, orderId);
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
