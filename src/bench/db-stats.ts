/**
 * Database work around a run, read from PostgreSQL's own counters: transactions committed and
 * rolled back in the module databases (`pg_stat_database`), and lock waits (`pg_locks`, sampled
 * while the storm runs). Needs a URL to the server; with `--target` and none given it is "n/a".
 *
 * @remarks Backends flush their statistics at most once a second, so the closing sample is taken
 * after the run has settled and a pause (and the opening one after a pause too, so the set-up's
 * work is not counted); the audit's own queries come after the closing sample.
 */
import { connect, databaseUrl, type Sql } from '../infra/database.js';

export interface DbWork {
  readonly commits: number;
  readonly rollbacks: number;
  /** Most lock waits seen in one sample during the run. */
  readonly lockWaitsPeak: number;
  /** Sum over samples (every {@link SAMPLE_MS} ms) of waiting locks: a time-weighted measure. */
  readonly lockWaitSamples: number;
  /** commits + rollbacks per unit sold (`null` when nothing sold). */
  readonly xactsPerSale: number | null;
}

const SAMPLE_MS = 100;
/** Backends flush their counters about once a second once idle: wait that out at both ends. */
const FLUSH_WAIT_MS = 1500;

export interface DbWatch {
  /** Starts sampling lock waits; resolves with the opening counters. */
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
  let samples = 0;
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
      const [row] = await sql<{ waiting: number }[]>`
        select count(*)::int8 as waiting from pg_locks l join pg_database d on d.oid = l.database
        where not l.granted and d.datname = any(${names})`;
      const waiting = Number(row?.waiting ?? 0);
      peak = Math.max(peak, waiting);
      samples += waiting;
    } catch {
      // a missed sample is not worth failing the run for
    } finally {
      sampling = false;
    }
  };

  return {
    begin: async () => {
      peak = 0;
      samples = 0;
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
        lockWaitSamples: samples,
        xactsPerSale: sold > 0 ? Math.round(((commits + rollbacks) / sold) * 100) / 100 : null,
      };
    },
    close: async () => {
      if (timer) clearInterval(timer);
      await sql.end({ timeout: 5 });
    },
  };
}
