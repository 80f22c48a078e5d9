/**
 * A long run interval by interval: of the answers that came back in each interval, purchases/s,
 * refusals by code, shed answers, 5xx and connection errors, beside the server's resident memory
 * and open descriptors read at the interval's planned end, under load. A rate that falls or a
 * figure that climbs from one interval to the next is what a soak is run to see; the whole run's
 * figures hide it.
 */
import { resourcesOf, type ResourceSample, type ServerResources } from './server-resources.js';
import { outcomesOf, type Outcomes, type RequestRecord } from './stats.js';

/** The run's outcomes (`stats.ts`) counted over the answers of one interval. */
export interface IntervalFigures extends Omit<Outcomes, 'requests' | 'unanswered'> {
  readonly fromSeconds: number;
  /** The last interval ends when the run's last answer came back, a little after the planned end. */
  readonly toSeconds: number;
  readonly purchasesPerSecond: number;
  /**
   * The server's resident memory read at the interval's planned end (the nearest reading after
   * the run's start), while the run's connections are still open (`null`: no reading).
   */
  readonly residentBytes: number | null;
  readonly openFds: number | null;
  /** Bench's own resident memory at that reading. */
  readonly benchResidentBytes: number | null;
}

export interface RunSeries {
  readonly intervalSeconds: number;
  readonly intervals: readonly IntervalFigures[];
  /** The server's resident memory and open descriptors at the run's start and end, and their peaks. */
  readonly resources: ServerResources;
  /** Every reading, in order: the start, one per interval's planned end, the end (after the run's last answer). */
  readonly samples: readonly ResourceSample[];
}

export interface SeriesInput {
  readonly records: readonly RequestRecord[];
  readonly intervalSeconds: number;
  /** The run's planned length (the scenario's duration). */
  readonly plannedSeconds: number;
  /** How long it ran, to its last answer. */
  readonly ranSeconds: number;
  readonly samples: readonly ResourceSample[];
}

/** When each interval is planned to end, in seconds from the run's start: every `intervalSeconds`, the last at `plannedSeconds`. */
export function intervalEnds(plannedSeconds: number, intervalSeconds: number): number[] {
  const count = Math.max(1, Math.ceil(plannedSeconds / intervalSeconds));
  return Array.from({ length: count }, (_, index) => Math.min((index + 1) * intervalSeconds, plannedSeconds));
}

export function seriesOf(input: SeriesInput): RunSeries {
  const { intervalSeconds, samples } = input;
  const ends = intervalEnds(input.plannedSeconds, intervalSeconds);
  const count = ends.length;
  // The start's reading is no interval's end; the one after the run stands in when a planned one is missing.
  const readings = samples.slice(1);
  const buckets: RequestRecord[][] = Array.from({ length: count }, () => []);
  for (const record of input.records) {
    const answeredSeconds = (record.startedAt + record.latencyMs) / 1000;
    // Answers to requests sent before the planned end that came back after it count in the last interval.
    buckets[Math.min(count - 1, Math.floor(answeredSeconds / intervalSeconds))]?.push(record);
  }
  const intervals = buckets.map((bucket, index): IntervalFigures => {
    const fromSeconds = index * intervalSeconds;
    const toSeconds = index === count - 1 ? Math.max(input.ranSeconds, input.plannedSeconds) : fromSeconds + intervalSeconds;
    // Per interval there are no buyers to count unanswered, only answers.
    const { requests, unanswered, ...outcomes } = outcomesOf(bucket, 0);
    const reading = nearest(readings, ends[index] ?? toSeconds);
    return {
      fromSeconds,
      toSeconds: round(toSeconds),
      ...outcomes,
      purchasesPerSecond: toSeconds > fromSeconds ? round(outcomes.sold / (toSeconds - fromSeconds)) : 0,
      residentBytes: reading?.residentBytes ?? null,
      openFds: reading?.openFds ?? null,
      benchResidentBytes: reading?.benchResidentBytes ?? null,
    };
  });
  return { intervalSeconds, intervals, resources: resourcesOf(samples), samples };
}

/** The sample read closest to `atSeconds`. */
function nearest(samples: readonly ResourceSample[], atSeconds: number): ResourceSample | undefined {
  let best: ResourceSample | undefined;
  for (const sample of samples) {
    if (!best || Math.abs(sample.atSeconds - atSeconds) < Math.abs(best.atSeconds - atSeconds)) best = sample;
  }
  return best;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
