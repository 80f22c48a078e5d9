/**
 * CPU time a process has used (user + system), read from `/proc/<pid>/stat`: bench reads it for
 * the server under test and the floor around each storm, to report what one answer cost. Linux
 * only; elsewhere, or for a process that is gone, `undefined` (the report says "n/a").
 *
 * @remarks The clock tick is USER_HZ, 100 on every Linux that Node supports.
 */
import { procStatFields } from '../infra/proc-stat.js';

const MS_PER_TICK = 10;

export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || pid <= 0) return undefined;
  const fields = procStatFields(pid);
  const userTicks = Number(fields?.[11]);
  const systemTicks = Number(fields?.[12]);
  if (!Number.isFinite(userTicks) || !Number.isFinite(systemTicks)) return undefined;
  return (userTicks + systemTicks) * MS_PER_TICK;
}

/** CPU µs per answer (a request that got any HTTP answer) between two readings; `null` when either reading is missing. */
export function cpuMicrosPerAnswer(before: number | undefined, after: number | undefined, records: readonly { status: number }[]): number | null {
  const answers = records.filter((record) => record.status !== 0).length;
  if (before === undefined || after === undefined || answers <= 0) return null;
  return Math.round(((after - before) * 1000) / answers);
}
