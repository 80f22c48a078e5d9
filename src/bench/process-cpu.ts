/**
 * CPU time a process has used (user + system), read from `/proc/<pid>/stat`: bench reads it for
 * the server under test and the floor around each storm, to report what one answer cost. Linux
 * only; elsewhere, or for a process that is gone, `undefined` (the report says "n/a").
 *
 * @remarks Hand-rolled rather than a library: it is two numbers from one line. The clock tick is
 * USER_HZ, 100 on every Linux that Node supports.
 */
import { readFileSync } from 'node:fs';

const MS_PER_TICK = 10;

export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || pid <= 0) return undefined;
  try {
    const line = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = line.slice(line.lastIndexOf(')') + 2).split(' ');
    const userTicks = Number(fields[11]);
    const systemTicks = Number(fields[12]);
    if (!Number.isFinite(userTicks) || !Number.isFinite(systemTicks)) return undefined;
    return (userTicks + systemTicks) * MS_PER_TICK;
  } catch {
    return undefined;
  }
}

/** CPU µs per answer between two readings; `null` when either reading is missing. */
export function cpuMicrosPerAnswer(before: number | undefined, after: number | undefined, answers: number): number | null {
  if (before === undefined || after === undefined || answers <= 0) return null;
  return Math.round(((after - before) * 1000) / answers);
}
