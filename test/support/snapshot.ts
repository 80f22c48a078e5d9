/**
 * A fingerprint of every module database (row counts and stock sums), so a test can prove a
 * refused request changed nothing anywhere.
 */
import type { ModuleDatabases } from '../../src/infra/database.js';

export async function snapshotStores(databases: ModuleDatabases): Promise<Record<string, unknown>> {
  const tables = async (sql: ModuleDatabases['users']): Promise<Record<string, unknown>> => {
    const names = await sql<{ table_name: string }[]>`
      select table_name from information_schema.tables
       where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`;
    const out: Record<string, unknown> = {};
    for (const { table_name: name } of names) {
      const [row] = await sql.unsafe<{ fingerprint: string }[]>(
        `select count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '') as fingerprint from "${name}" t`,
      );
      out[name] = row?.fingerprint;
    }
    return out;
  };
  return {
    users: await tables(databases.users),
    inventory: await tables(databases.inventory),
    orders: await tables(databases.orders),
  };
}

/**
 * A fingerprint taken once the stores have stopped changing by themselves (two in a row, 200 ms
 * apart, agree): background work a test did not cause (the order pipeline writing, the outbox
 * relay marking events relayed) must not be read as a change a refused request made.
 */
export async function settledSnapshot(databases: ModuleDatabases, withinMs = 30_000): Promise<Record<string, unknown>> {
  const until = Date.now() + withinMs;
  let last = await snapshotStores(databases);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const next = await snapshotStores(databases);
    if (JSON.stringify(next) === JSON.stringify(last)) return next;
    if (Date.now() > until) throw new Error(`the stores were still changing after ${withinMs} ms`);
    last = next;
  }
}
