/**
 * What one run measured, and the numbers derived from it: latency percentiles from an HDR
 * histogram, outcomes by code, shed answers, connection errors, throughput and fairness.
 */
import { build } from 'hdr-histogram-js';

export type RequestKind = 'purchase' | 'pay';

/** One request as the buyer saw it (times in ms since the barrier). */
export interface RequestRecord {
  readonly buyer: number;
  readonly kind: RequestKind;
  /** 0 for the first try; retries after shed answers count up; a checkout loser's new tries too. */
  readonly attempt: number;
  readonly startedAt: number;
  readonly writtenAt: number;
  readonly latencyMs: number;
  /** 0: no HTTP answer (see `error`). */
  readonly status: number;
  readonly code: string | undefined;
  readonly error: string | undefined;
  readonly orderId: string | undefined;
}

/** A 503 (`OVERLOADED`, `NOT_READY`) or `409 CONTENTION`: the server asked the buyer to come back. */
export function isShed(record: Pick<RequestRecord, 'status' | 'code'>): boolean {
  return record.status === 503 || (record.status === 409 && record.code === 'CONTENTION');
}

export interface LatencySummary {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Percentile → ms, for the HTML chart (HDR-style, denser towards the tail). */
  readonly curve: readonly { readonly percentile: number; readonly ms: number }[];
}

const CURVE_POINTS = [0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 100];

/** Latency percentiles (ms, microsecond resolution) of the answered requests. */
export function latencyOf(records: readonly RequestRecord[]): LatencySummary {
  const histogram = build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
  try {
    for (const record of records) {
      if (record.status > 0) histogram.recordValue(Math.max(1, Math.round(record.latencyMs * 1000)));
    }
    const ms = (micros: number): number => Math.round(micros) / 1000;
    if (histogram.totalCount === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0, curve: [] };
    return {
      count: histogram.totalCount,
      mean: ms(histogram.mean),
      p50: ms(histogram.getValueAtPercentile(50)),
      p90: ms(histogram.getValueAtPercentile(90)),
      p99: ms(histogram.getValueAtPercentile(99)),
      max: ms(histogram.maxValue),
      curve: CURVE_POINTS.map((percentile) => ({ percentile, ms: ms(histogram.getValueAtPercentile(percentile)) })),
    };
  } finally {
    histogram.destroy();
  }
}

export interface Outcomes {
  readonly requests: number;
  /** Purchases answered 2xx. */
  readonly sold: number;
  /** Definitive refusals by `status code` (e.g. `409 SOLD_OUT`). */
  readonly rejected: Readonly<Record<string, number>>;
  readonly shed: number;
  /** 5xx other than shed 503s. */
  readonly serverErrors: number;
  readonly connectionErrors: number;
  readonly connectionErrorsByCode: Readonly<Record<string, number>>;
  /** Buyers whose last purchase try got no definitive answer. */
  readonly unanswered: number;
}

export function outcomesOf(records: readonly RequestRecord[], buyers: number): Outcomes {
  let sold = 0;
  let shed = 0;
  let serverErrors = 0;
  let connectionErrors = 0;
  const rejected: Record<string, number> = {};
  const byCode: Record<string, number> = {};
  const definitive = new Set<number>();
  let requests = 0;
  for (const record of records) {
    if (record.kind !== 'purchase') continue;
    requests += 1;
    if (record.status === 0) {
      connectionErrors += 1;
      const key = record.error ?? 'unknown';
      byCode[key] = (byCode[key] ?? 0) + 1;
    } else if (isShed(record)) shed += 1;
    else if (record.status >= 500) serverErrors += 1;
    else if (record.status >= 200 && record.status < 300) {
      sold += 1;
      definitive.add(record.buyer);
    } else {
      const key = `${record.status} ${record.code ?? ''}`.trim();
      rejected[key] = (rejected[key] ?? 0) + 1;
      definitive.add(record.buyer);
    }
  }
  return {
    requests,
    sold,
    rejected,
    shed,
    serverErrors,
    connectionErrors,
    connectionErrorsByCode: byCode,
    unanswered: Math.max(0, buyers - definitive.size),
  };
}

/**
 * Of the W buyers who won on their first go, the share that were among the first W to have their
 * request written. 1 is strict first-come-first-served; `null` when nobody won.
 */
export function fairnessOf(records: readonly RequestRecord[]): number | null {
  const firstTries = records.filter((record) => record.kind === 'purchase' && record.attempt === 0);
  const winners = new Set(firstTries.filter((record) => record.status >= 200 && record.status < 300).map((record) => record.buyer));
  if (winners.size === 0) return null;
  const written = (record: RequestRecord): number => (Number.isNaN(record.writtenAt) ? Number.POSITIVE_INFINITY : record.writtenAt);
  const earliest = [...firstTries].sort((a, b) => written(a) - written(b)).slice(0, winners.size);
  const hits = earliest.filter((record) => winners.has(record.buyer)).length;
  return hits / winners.size;
}

/** Seconds from the barrier to the last answer. */
export function wallSecondsOf(records: readonly RequestRecord[]): number {
  let last = 0;
  for (const record of records) last = Math.max(last, record.startedAt + record.latencyMs);
  return last / 1000;
}
