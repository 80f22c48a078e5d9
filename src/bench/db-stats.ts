/**
 * Database work around a run, read from PostgreSQL's own counters: transactions committed and
 * rolled back in the module databases (`pg_stat_database`), and backends waiting on a lock
 * (`pg_stat_activity`, sampled while the storm runs). Needs a URL to the server; with `--target`
 * and none given it is "n/a".
 *
 * @remarks A busy backend publishes its counters at most once a second, and one that published
 * less than a second ago holds the rest until it has been idle 10 s (PostgreSQL 15+,
 * `PGSTAT_IDLE_INTERVAL`). Both samples wait {@link FLUSH_WAIT_MS} after the work before them, so
 * most of it is published; commits of a run's last second may be counted in the next reading.
 * Not the full 10 s: left idle that long, the server under test goes cold again (p99 and CPU per
 * answer up by a third to a half), which costs more truth than it buys. The audit's own queries
 * come after the closing sample.
 */
import { connect, databaseUrl, type Sql } from '../infra/database.js';

export interface DbWork {
  readonly commits: number;
  readonly rollbacks: number;
  /** Most backends seen waiting on a lock in one sample during the run. */
  readonly lockWaitsPeak: number;
  /** commits + rollbacks per unit sold (`null` when nothing sold). */
  readonly xactsPerSale: number | null;
}

const SAMPLE_MS = 100;
/** Long enough for a backend that published over a second ago to publish again (see the remarks). */
const FLUSH_WAIT_MS = 1500;

export interface DbWatch {
  /** Waits for the counters to settle, reads them, and starts sampling lock waits. */
  begin(): Promise<void>;
  /** Stops sampling and returns the work done since {@link begin}. */
  end(sold: number): Promise<DbWork>;
  close(): Promise<void>;
}

interface Counters {
  readonly commits: number;
  readonly rollbacks: number;
}

/** Watches the databases `<prefix>users|inventory|orders` on the server at `baseUrl`. */
export function watchDatabases(baseUrl: string, prefix: string): DbWatch {
  const sql: Sql = connect(databaseUrl(baseUrl, 'postgres'), 1, 'flashsale:bench');
  const names = ['users', 'inventory', 'orders'].map((module) => `${prefix}${module}`);
  let opening: Counters = { commits: 0, rollbacks: 0 };
  let timer: NodeJS.Timeout | undefined;
  let peak = 0;
  let sampling = false;

  const counters = async (): Promise<Counters> => {
    const [row] = await sql<{ commits: number; rollbacks: number }[]>`
      select coalesce(sum(xact_commit), 0)::int8 as commits, coalesce(sum(xact_rollback), 0)::int8 as rollbacks
      from pg_stat_database where datname = any(${names})`;
    return { commits: Number(row?.commits ?? 0), rollbacks: Number(row?.rollbacks ?? 0) };
  };
  const sampleLocks = async (): Promise<void> => {
    if (sampling) return;
    sampling = true;
    try {
      // Not pg_locks joined on the database: a wait for another transaction's row lock is on its
      // transaction id, which belongs to no database, and would not be counted.
      const [row] = await sql<{ waiting: number }[]>`
        select count(*)::int8 as waiting from pg_stat_activity
         where wait_event_type = 'Lock' and datname = any(${names})`;
      peak = Math.max(peak, Number(row?.waiting ?? 0));
    } catch {
      // a missed sample is not worth failing the run for
    } finally {
      sampling = false;
    }
  };

  return {
    begin: async () => {
      peak = 0;
      await new Promise((resolve) => setTimeout(resolve, FLUSH_WAIT_MS));
      opening = await counters();
      timer = setInterval(() => void sampleLocks(), SAMPLE_MS);
    },
    end: async (sold) => {
      if (timer) clearInterval(timer);
      timer = undefined;
      await new Promise((resolve) => setTimeout(resolve, FLUSH_WAIT_MS));
      const closing = await counters();
      const commits = closing.commits - opening.commits;
      const rollbacks = closing.rollbacks - opening.rollbacks;
      return {
        commits,
        rollbacks,
        lockWaitsPeak: peak,
        xactsPerSale: sold > 0 ? Math.round(((commits + rollbacks) / sold) * 100) / 100 : null,
      };
    },
    close: async () => {
      if (timer) clearInterval(timer);
      await sql.end({ timeout: 5 });
    },
  };
}
