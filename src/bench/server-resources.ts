/**
 * The server's resident memory and open file descriptors while a long run goes on: read at its
 * start, at each interval's planned end and after its last answer, from the server's `/metrics`
 * (prom-client's default process metrics). Over HTTP rather than from `/proc`, so a `--target`
 * server that bench did not start is read the same way.
 */
import { performance } from 'node:perf_hooks';
import type { AdminApi } from './client.js';
import { scrapeMetrics } from './metrics-scrape.js';

export interface ResourceSample {
  /** Seconds since the run began (0: read just before it). */
  readonly atSeconds: number;
  /** `flashsale_process_resident_memory_bytes`; `null` when the server did not say (a failed scrape, or not Linux). */
  readonly residentBytes: number | null;
  /** `flashsale_process_open_fds`; `null` likewise. */
  readonly openFds: number | null;
  /**
   * Bench's own resident memory at the same moment. It keeps every request's record until the
   * run ends, so on a long run it grows by design; beside the server's figure it tells a rate
   * that fell with the load generator's heap from one that fell with the server.
   */
  readonly benchResidentBytes: number;
}

export interface ServerResources {
  readonly start: ResourceSample | null;
  readonly end: ResourceSample | null;
  /** The highest reading of the run, `null` when there was none. */
  readonly peakResidentBytes: number | null;
  readonly peakOpenFds: number | null;
}

async function sampleAt(admin: AdminApi, atSeconds: number): Promise<ResourceSample> {
  const metrics = await scrapeMetrics(admin).catch(() => undefined);
  return {
    atSeconds: Math.round(atSeconds * 100) / 100,
    residentBytes: metrics?.value('flashsale_process_resident_memory_bytes') ?? null,
    openFds: metrics?.value('flashsale_process_open_fds') ?? null,
    benchResidentBytes: process.memoryUsage.rss(),
  };
}

/**
 * Runs `work`, reading the server's resources just before it, at each of `atSeconds` (from its
 * start; each planned from the start, so a slow scrape does not shift the later ones) while it
 * runs, and after it.
 */
export async function sampleWhile<T>(
  admin: AdminApi,
  atSeconds: readonly number[],
  work: () => Promise<T>,
): Promise<{ result: T; samples: ResourceSample[] }> {
  const samples: ResourceSample[] = [await sampleAt(admin, 0)];
  const origin = performance.now();
  const elapsedSeconds = (): number => (performance.now() - origin) / 1000;
  const pending: Promise<void>[] = [];
  const timers = atSeconds.map((at) =>
    setTimeout(() => {
      pending.push(
        sampleAt(admin, elapsedSeconds()).then((sample) => {
          samples.push(sample);
        }),
      );
    }, at * 1000),
  );
  try {
    const result = await work();
    for (const timer of timers) clearTimeout(timer);
    await Promise.all(pending);
    samples.push(await sampleAt(admin, elapsedSeconds()));
    return { result, samples: samples.sort((a, b) => a.atSeconds - b.atSeconds) };
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}

/** Start, end and peak of the samples. */
export function resourcesOf(samples: readonly ResourceSample[]): ServerResources {
  const peak = (figure: (sample: ResourceSample) => number | null): number | null => {
    const values = samples.map(figure).filter((value): value is number => value !== null);
    return values.length > 0 ? Math.max(...values) : null;
  };
  return {
    start: samples[0] ?? null,
    end: samples.at(-1) ?? null,
    peakResidentBytes: peak((sample) => sample.residentBytes),
    peakOpenFds: peak((sample) => sample.openFds),
  };
}

/** Bytes as MB with one decimal, for the reports (`n/a` without a reading). */
export function formatMegabytes(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? 'n/a' : (bytes / 1024 ** 2).toFixed(1);
}

const count = (value: number | null | undefined): string => (value === null || value === undefined ? 'n/a' : String(value));

/** One line for the reports: the server's memory and descriptors at the start and end, and their peaks. */
export function describeResources(resources: ServerResources): string {
  const { start, end } = resources;
  return (
    `server resident memory ${formatMegabytes(start?.residentBytes)} MB at the start, ${formatMegabytes(end?.residentBytes)} MB at the end ` +
    `(peak ${formatMegabytes(resources.peakResidentBytes)} MB) · open file descriptors ${count(start?.openFds)} at the start, ` +
    `${count(end?.openFds)} at the end (peak ${count(resources.peakOpenFds)})`
  );
}
