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
