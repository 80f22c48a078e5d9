/**
 * Each module's `functions.sql` holds the live definition of every stored function its
 * migrations leave behind (the migrations are append-only, so a function they redefine is read
 * there, not pieced together from them). For each module: migrate a throw-away database, read
 * every function as PostgreSQL reports it (`pg_get_functiondef`), drop them all, run the module's
 * `functions.sql` on the same tables, and read again. Both readings must be identical: the same
 * functions, each with the same signature, attributes and body, comments in the body included.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MODULE_NAMES, type ModuleName } from '../src/config.js';
import { connect, databaseUrl, dropDatabases, ensureDatabases, type Sql } from '../src/infra/database.js';
import { migrate } from '../src/infra/migrate.js';
import { TEST_DATABASE_URL } from './support/server.js';

/** Signature (`name(argument types)`) → definition, for every function of the public schema. */
type Definitions = Record<string, string>;

/** Functions and procedures of the public schema, not those an extension brought. */
async function definitions(sql: Sql): Promise<Definitions> {
  const rows = await sql<{ signature: string; definition: string }[]>`
    select p.oid::regprocedure::text as signature, pg_get_functiondef(p.oid) as definition
      from pg_proc p
      join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public'
       and p.prokind in ('f', 'p')
       and not exists (select 1 from pg_depend d
                        where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
     order by 2`;
  return Object.fromEntries(rows.map((row) => [row.signature, row.definition]));
}

function functionsFile(module: ModuleName): { path: string; text: string } {
  const url = new URL(`../src/${module}/functions.sql`, import.meta.url);
  // A module whose migrations define no function needs no file.
  return { path: `src/${module}/functions.sql`, text: existsSync(url) ? readFileSync(url, 'utf8') : '' };
}

/** Runs `check` on a database of its own, migrated for `module`, and drops it after. */
async function withMigratedDatabase(module: ModuleName, check: (sql: Sql) => Promise<void>): Promise<void> {
  const name = `t_${randomBytes(5).toString('hex')}_${module}`;
  await ensureDatabases(TEST_DATABASE_URL, [name]);
  const sql = connect(databaseUrl(TEST_DATABASE_URL, name), 1, 'flashsale:test');
  try {
    await migrate(sql, module);
    await check(sql);
  } finally {
    await sql.end({ timeout: 5 });
    await dropDatabases(TEST_DATABASE_URL, [name]);
  }
}

describe('the live definition of every stored function', () => {
  it.each(MODULE_NAMES)('%s: functions.sql defines exactly the functions its migrations leave, as they leave them', async (module) => {
    const file = functionsFile(module);
    await withMigratedDatabase(module, async (sql) => {
      const migrated = await definitions(sql);
      const signatures = Object.keys(migrated);
      // Also keeps the comparison from passing on two empty readings.
      expect(signatures.length > 0, `${file.path} exists exactly when the migrations of ${module} define functions`).toBe(file.text !== '');
      // One statement, so functions that call one another go together.
      if (signatures.length > 0) await sql.unsafe(`drop function ${signatures.join(', ')}`);
      expect(await definitions(sql)).toEqual({});
      if (file.text !== '') await sql.unsafe(file.text);
      expect(await definitions(sql), `${file.path} against the migrations of ${module}`).toEqual(migrated);
    });
  });
});
