/** The users module: accounts, balances in integer cents, and bearer tokens. */
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type { Tokens } from '../infra/tokens.js';
import type { IssuedUser, User, UsersClient } from './users.client.js';

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

export class UsersService implements UsersClient {
  constructor(private readonly options: UsersOptions) {}

  async signUp(name: string): Promise<IssuedUser> {
    const id = this.options.newId();
    await this.options.sql`insert into users (id, name) values (${id}, ${name})`;
    return { id, token: this.options.tokens.sign(id) };
  }

  async createMany(count: number, balanceCents: number, namePrefix: string): Promise<IssuedUser[]> {
    const ids = Array.from({ length: count }, () => this.options.newId());
    const names = ids.map((_, index) => `${namePrefix}${index + 1}`);
    // One statement for the whole batch: 10,000 buyers in one round trip.
    await this.options.sql`
      insert into users (id, name, balance_cents)
      select id, name, ${balanceCents}::bigint
        from unnest(${ids}::uuid[], ${names}::text[]) as batch (id, name)`;
    return ids.map((id) => ({ id, token: this.options.tokens.sign(id) }));
  }

  async getUser(id: string): Promise<User> {
    const [row] = await this.options.sql<UserRow[]>`select * from users where id = ${id}`;
    if (!row) throw new DomainError('USER_NOT_FOUND', undefined, { userId: id });
    return { id: row.id, name: row.name, balanceCents: row.balance_cents, createdAt: row.created_at.toISOString() };
  }
}
