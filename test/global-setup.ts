/**
 * Checks the 127.0.0.1 PostgreSQL that the integration tests use is reachable before any test
 * runs, so a missing service fails once and clearly instead of in every file.
 */
import postgres from 'postgres';

export const DEFAULT_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export default async function setup(): Promise<void> {
  const url = process.env['TEST_DATABASE_URL'] ?? DEFAULT_TEST_DATABASE_URL;
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => undefined });
  try {
    await sql`select 1`;
  } catch (error) {
    throw new Error(`the tests need PostgreSQL at ${url} (set TEST_DATABASE_URL): ${String(error)}`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}
