/**
 * Opens the module databases. Each module (users, inventory, orders) owns its own database; on a
 * shared server they are `<prefix>users`, `<prefix>inventory`, `<prefix>orders`, created if missing.
 * This is the one place connections are opened; `close()` is the one place they are closed.
 */
import postgres from 'postgres';
import { MODULE_NAMES, type ModuleName } from '../config.js';

export type Sql = postgres.Sql;
/** A connection taken out of a pool for one transaction. */
export type Tx = postgres.ReservedSql;

export type ModuleDatabases = Readonly<Record<ModuleName, Sql>> & {
  /** URLs actually used, per module (for `migrate` and for the audit's own connections). */
  readonly urls: Readonly<Record<ModuleName, string>>;
  close(): Promise<void>;
};

export interface OpenOptions {
  /** Server to create the module databases on. */
  readonly baseUrl: string;
  readonly prefix: string;
  readonly overrides?: Readonly<Partial<Record<ModuleName, string | undefined>>>;
  readonly poolSize: number;
  /** Name shown in `pg_stat_activity`, so operators and bench can tell our sessions apart. */
  readonly applicationName?: string;
  /** The modules whose databases this process opens (default: all three). */
  readonly modules?: readonly ModuleName[];
}

/** int8 (counts, cents) arrive as JS numbers: every value we store fits in 2^53. */
const int8AsNumber = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
};

/**
 * Runs `work` in one transaction on a connection of its own: `BEGIN`, then `COMMIT`, or
 * `ROLLBACK` and rethrow when `work` throws. Every transaction of the project goes through here.
 *
 * @remarks Explicit `BEGIN`/`COMMIT` on a `sql.reserve()`d connection rather than `sql.begin()`:
 * under a storm postgres.js 3.4.9 can send `sql.begin()`'s `BEGIN` on a connection it has not
 * reserved (porsager/postgres#823, #1189), failing the request with `UNSAFE_TRANSACTION` and
 * handing a connection still inside a transaction back to the pool. The connection goes back to
 * the pool before the caller sees the outcome, so a small pool cannot starve on its own answers.
 */
export async function transaction<T>(sql: Sql, work: (tx: Tx) => Promise<T>): Promise<T> {
  const tx = await sql.reserve();
  try {
    await tx`begin`;
    let result: T;
    try {
      result = await work(tx);
    } catch (error) {
      await tx`rollback`;
      throw error;
    }
    await tx`commit`;
    return result;
  } finally {
    tx.release();
  }
}

/** Opens one connection pool on `url`. */
export function connect(url: string, poolSize: number, applicationName = 'flashsale'): Sql {
  return postgres(url, {
    max: poolSize,
    // Connections are kept: opening one mid-storm costs a backend fork and, with SCRAM, a
    // PBKDF2 that blocks the event loop for milliseconds.
    idle_timeout: 0,
    // Seconds: a server that is down refuses at once, but one that does not answer must not hold
    // a buyer for long (the checkout's own deadline, STORE_DEADLINE_MS, answers first anyway).
    connect_timeout: 5,
    // Seconds before reconnecting after a failed attempt: postgres.js grows it to 20 s (3ⁿ/100);
    // capped at half a second, a restarted server sells again within a second of coming back.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 0.5),
    onnotice: () => undefined,
    types: { bigint: int8AsNumber },
    connection: {
      application_name: applicationName,
      // Every execution planned for the table as it is now. A session's cached (generic) plan is
      // made when the tables are new and empty, where a sequential scan is cheapest, and is kept
      // until the table is analysed; without autovacuum (or between its passes) the statements
      // that look rows up by id (a queue group's allocations, a batch's orders) went on scanning
      // tables of millions of rows: `hot` on queue fell from 1,424 to 566 purchases/s in two
      // minutes, and held at 2,126-2,374 with this. The plan of these statements costs far less
      // than one lookup in a scanned table.
      plan_cache_mode: 'force_custom_plan',
    },
  });
}

/** Creates the module databases that are missing on `baseUrl` and opens a pool on each. */
export async function openModuleDatabases(options: OpenOptions): Promise<ModuleDatabases> {
  const here = options.modules ?? MODULE_NAMES;
  const urls = {} as Record<ModuleName, string>;
  for (const module of MODULE_NAMES) {
    const override = options.overrides?.[module];
    urls[module] = override ?? databaseUrl(options.baseUrl, `${options.prefix}${module}`);
  }
  const toCreate = here.filter((module) => options.overrides?.[module] === undefined);
  if (toCreate.length > 0) {
    await ensureDatabases(options.baseUrl, toCreate.map((module) => `${options.prefix}${module}`));
  }
  const app = options.applicationName ?? 'flashsale';
  const sizes = modulePoolSizes(options.poolSize);
  const opened = here.map((module) => [module, connect(urls[module], sizes[module], `${app}:${module}`)] as const);
  await Promise.all(opened.map(([, sql]) => warm(sql, sql.options.max)));
  const pools = Object.fromEntries(opened) as Partial<Record<ModuleName, Sql>>;
  return {
    users: pools.users ?? elsewhere('users'),
    inventory: pools.inventory ?? elsewhere('inventory'),
    orders: pools.orders ?? elsewhere('orders'),
    urls,
    close: async () => {
      await Promise.all(opened.map(([, sql]) => sql.end({ timeout: 5 })));
    },
  };
}

/**
 * The database of a module another process serves: any use of it throws, so a path that goes
 * around that module's client (a foreign table read) fails loudly instead of opening a pool.
 */
function elsewhere(module: ModuleName): Sql {
  const refuse = (): never => {
    throw new Error(`the ${module} database is not opened in this process: ${module} is a service of its own, reached through its client`);
  };
  return new Proxy(refuse, { apply: refuse, get: refuse }) as unknown as Sql;
}

/**
 * The connections each module's pool opens (and keeps) for `DB_POOL_SIZE`: inventory and orders
 * that many, users (a debit or refund per payment, no stock step) half, at least 2.
 */
export function modulePoolSizes(poolSize: number): Readonly<Record<ModuleName, number>> {
  return { users: Math.max(2, Math.ceil(poolSize / 2)), inventory: poolSize, orders: poolSize };
}

/**
 * Opens every connection of a pool now, at start-up, rather than during the first storm: at the
 * moment a drop opens, each new connection would stall the event loop and the queue behind it.
 */
async function warm(sql: Sql, size: number): Promise<void> {
  await Promise.all(Array.from({ length: size }, () => sql`select 1`));
}

/** The same server as `baseUrl`, another database. */
export function databaseUrl(baseUrl: string, database: string): string {
  const url = new URL(baseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Creates each database that does not exist yet; safe when several processes race to do it. */
export async function ensureDatabases(baseUrl: string, names: readonly string[]): Promise<void> {
  const admin = connect(baseUrl, 1, 'flashsale:admin');
  try {
    for (const name of names) {
      const [found] = await admin`select 1 as found from pg_database where datname = ${name}`;
      if (found) continue;
      try {
        await admin.unsafe(`create database "${name}"`);
      } catch (error) {
        // 42P04 duplicate_database, 23505 unique_violation: another process created it first.
        const code = (error as { code?: string }).code;
        if (code !== '42P04' && code !== '23505') throw error;
      }
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Drops databases (tests and bench clean up after themselves with this). */
export async function dropDatabases(baseUrl: string, names: readonly string[]): Promise<void> {
  const admin = connect(baseUrl, 1, 'flashsale:admin');
  try {
    for (const name of names) await admin.unsafe(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/**
 * Whether the database answers `select 1` within `withinMs` (for `/readyz`): bounded, since a
 * server that is restarting may take a connection attempt's whole timeout.
 */
export async function answersWithin(sql: Sql, withinMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), withinMs);
  });
  try {
    return await Promise.race([sql`select 1`.then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}
