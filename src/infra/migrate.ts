/**
 * Applies a module's numbered, append-only SQL migrations (`NNN_name.sql` beside the module).
 * A landed migration is never edited: its checksum is recorded, and a changed file stops start-up.
 * An advisory lock lets several processes start at once without applying a file twice.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transaction, type Sql } from './database.js';
import type { ModuleName } from '../config.js';

const MIGRATION_FILE = /^(\d{3})_[a-z0-9_]+\.sql$/;
/** Arbitrary constant: the advisory lock key every flashsale migrator agrees on. */
const LOCK_KEY = 7_303_170_451;

export interface AppliedMigration {
  readonly version: number;
  readonly name: string;
}

function migrationsDirectory(module: ModuleName): string {
  return fileURLToPath(new URL(`../${module}/migrations/`, import.meta.url));
}

/** Applies the pending migrations of `module` to `sql`; returns the ones it applied. */
export async function migrate(sql: Sql, module: ModuleName): Promise<AppliedMigration[]> {
  const directory = migrationsDirectory(module);
  const files = (await readdir(directory)).filter((name) => MIGRATION_FILE.test(name)).sort();
  const applied: AppliedMigration[] = [];
  await transaction(sql, async (tx) => {
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`;
    await tx`create table if not exists schema_migrations (
      version integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`;
    const done = new Map(
      (await tx<{ version: number; checksum: string }[]>`select version, checksum from schema_migrations`).map(
        (row) => [row.version, row.checksum],
      ),
    );
    for (const name of files) {
      const version = Number(MIGRATION_FILE.exec(name)?.[1]);
      const text = await readFile(`${directory}${name}`, 'utf8');
      const checksum = createHash('sha256').update(text).digest('hex');
      const previous = done.get(version);
      if (previous !== undefined) {
        if (previous !== checksum) {
          throw new Error(`migration ${module}/${name} was edited after it was applied; add a new migration instead`);
        }
        continue;
      }
      await tx.unsafe(text);
      await tx`insert into schema_migrations (version, name, checksum) values (${version}, ${name}, ${checksum})`;
      applied.push({ version, name });
    }
  });
  return applied;
}
