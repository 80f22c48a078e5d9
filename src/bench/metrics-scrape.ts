/**
 * The server's Prometheus exposition (`GET /metrics`, text format 0.0.4) as samples bench can
 * look up by name and labels. Bench reads only a few of the order pipeline's gauges and counters,
 * so this is the smallest reader that does: one sample per line, `name{label="value",…} value`,
 * and the `# TYPE` lines that say which metric families the server has at all.
 */
import type { AdminApi } from './client.js';

export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricsSnapshot {
  readonly samples: readonly MetricSample[];
  /** Whether the server declares this metric family (even with no sample yet). */
  has(family: string): boolean;
  /** The sample of `name` whose labels include `labels`; `undefined` when there is none. */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
  /** The sum of every sample of `name` (0 when there is none). */
  sum(name: string): number;
}

const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const TYPE = /^# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) /;

export function parseMetrics(text: string): MetricsSnapshot {
  const samples: MetricSample[] = [];
  const families = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) {
      const family = TYPE.exec(line)?.[1];
      if (family !== undefined) families.add(family);
      continue;
    }
    const match = SAMPLE.exec(line);
    if (!match?.[1] || match[3] === undefined) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) {
      if (key !== undefined && value !== undefined) labels[key] = value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  const matching = (name: string, labels: Readonly<Record<string, string>>): MetricSample[] =>
    samples.filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value));
  return {
    samples,
    has: (family) => families.has(family),
    value: (name, labels = {}) => matching(name, labels)[0]?.value,
    sum: (name) => matching(name, {}).reduce((total, sample) => total + sample.value, 0),
  };
}

export async function scrapeMetrics(admin: AdminApi): Promise<MetricsSnapshot> {
  return parseMetrics(await admin.text('/metrics'));
}
