/**
 * A process's line of `/proc/<pid>/stat`, split into fields. Linux only (where the embedded
 * PostgreSQL binaries and bench's CPU figures run); elsewhere, or for a process that is gone,
 * `undefined`.
 *
 * @remarks Hand-rolled rather than a library: it is one line of one file.
 */
import { readFileSync } from 'node:fs';

/**
 * The fields after the command name, so index 0 is field 3 (`state`), 1 the parent pid, 11 and
 * 12 user and system time in clock ticks (see proc(5)).
 */
export function procStatFields(pid: number): string[] | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return line.slice(line.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
