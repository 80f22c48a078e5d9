/**
 * CPU time a process has used (user + system), read from `/proc/<pid>/stat`: bench reads it for
 * the server under test and the floor around each storm, to report what one answer cost. Linux
 * only; elsewhere, or for a process that is gone, `undefined` (the report says "n/a").
 *
 * @remarks The clock tick is USER_HZ, 100 on every Linux that Node supports.
 */
import { procStatFields } from '../infra/proc-stat.js';
import { parseMetrics } from './metrics-scrape.js';

const MS_PER_TICK = 10;

export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || pid <= 0) return undefined;
  const fields = procStatFields(pid);
  const userTicks = Number(fields?.[11]);
  const systemTicks = Number(fields?.[12]);
  if (!Number.isFinite(userTicks) || !Number.isFinite(systemTicks)) return undefined;
  return (userTicks + systemTicks) * MS_PER_TICK;
}

/**
 * The CPU time (ms) of every process whose `/metrics` is at `urls`, summed: prom-client's
 * `flashsale_process_cpu_seconds_total` (user + system), as each process reads it of itself, so a
 * target on another host, or split over several processes, is read whole. `undefined` when any
 * of them does not answer with it (a figure for part of the target would look like the whole).
 */
export async function scrapedCpuMs(urls: readonly string[], adminToken: string): Promise<number | undefined> {
  const readings = await Promise.all(
    urls.map(async (url) => {
      try {
        const response = await fetch(url, { headers: { authorization: `Bearer ${adminToken}` } });
        if (!response.ok) return undefined;
        return parseMetrics(await response.text()).value('flashsale_process_cpu_seconds_total');
      } catch {
        return undefined;
      }
    }),
  );
  if (readings.some((seconds) => seconds === undefined)) return undefined;
  return readings.reduce<number>((total, seconds) => total + (seconds ?? 0) * 1000, 0);
}

/** CPU µs per answer (a request that got any HTTP answer) between two readings; `null` when either reading is missing. */
export function cpuMicrosPerAnswer(before: number | undefined, after: number | undefined, records: readonly { status: number }[]): number | null {
  const answers = records.filter((record) => record.status !== 0).length;
  if (before === undefined || after === undefined || answers <= 0) return null;
  return Math.round(((after - before) * 1000) / answers);
}
