/**
 * The order pipeline's drain after a storm (redis-lua, or any strategy whose `201` means "the
 * broker confirmed the order" and a consumer writes it to PostgreSQL later): how long from the
 * storm's last answer until every order it confirmed is in PostgreSQL, read from the server's
 * `/metrics`.
 *
 * Drained means: no publish in flight, no message waiting in the placed queue, and the consumer
 * has written at least as many orders as were confirmed since the storm began. The queue's depth
 * alone cannot say it: it counts only messages not yet delivered, and the consumer takes up to a
 * thousand at a time (its prefetch) before it has written any of them.
 */
import { performance } from 'node:perf_hooks';
import type { AdminApi } from './client.js';
import { scrapeMetrics, type MetricsSnapshot } from './metrics-scrape.js';

export interface PipelineDrain {
  readonly drained: boolean;
  /** ms from the storm's last answer until drained (when not drained: how long bench waited). */
  readonly drainMs: number;
  /** Why bench stopped waiting: `timeout` (the limit passed), `stalled` (nothing moved for a while). */
  readonly gaveUp: 'timeout' | 'stalled' | null;
  /** Orders the broker confirmed during the run (each one owed a write). */
  readonly confirmed: number;
  /** At the storm's last answer: messages waiting in the placed queue, not yet delivered to the consumer. */
  readonly queuedAtEnd: number;
  /** At the storm's last answer: confirmed orders not yet written (queued, or delivered and being written). */
  readonly unwrittenAtEnd: number;
  /** `flashsale_consumer_lag_seconds` when drained (or at the last reading): grant → commit of the last order written. */
  readonly lagSeconds: number | null;
  /** `flashsale_consumer_last_batch_size` at the same reading. */
  readonly lastBatchSize: number | null;
  /** Messages in the dead-letter queue at the same reading (0 unless an order could not be written). */
  readonly deadLetters: number | null;
}

/** The pipeline's running totals before the storm, which the drain is measured against. */
export interface PipelineMark {
  readonly published: number;
  readonly confirmed: number;
  readonly written: number;
}

export interface DrainLimits {
  /** How often `/metrics` is read. */
  readonly pollMs: number;
  /** Give up after this long (reported as not drained). */
  readonly limitMs: number;
  /**
   * Give up sooner when nothing moves for this long: a consumer that is not in the server bench
   * reads (`WORKER=false`, a separate `flashsale worker`) writes where its counters cannot see,
   * and one that is stuck will not finish within the limit either.
   */
  readonly stallMs: number;
}

export const DEFAULT_DRAIN_LIMITS: DrainLimits = { pollMs: 50, limitMs: 60_000, stallMs: 10_000 };

/** A drain longer than this after a hot run means the consumer was behind the buyers, not only busy with its last batch. */
export const KEPT_UP_DRAIN_MS = 1000;

const PLACED = { queue: 'placed' };
const DEAD = { queue: 'dead' };

/** The totals before the storm; `null` when the server has no order pipeline (no `flashsale_queue_depth`). */
export async function markPipeline(admin: AdminApi): Promise<PipelineMark | null> {
  const metrics = await scrapeMetrics(admin).catch(() => undefined);
  if (!metrics?.has('flashsale_queue_depth')) return null;
  return totalsOf(metrics);
}

function totalsOf(metrics: MetricsSnapshot): PipelineMark {
  return {
    published: metrics.sum('flashsale_publishes_total'),
    confirmed: metrics.value('flashsale_publishes_total', { outcome: 'confirmed' }) ?? 0,
    written: metrics.value('flashsale_consumer_orders_written_total') ?? 0,
  };
}

interface Reading {
  readonly inFlight: number;
  /** `undefined`: the server could not read the queue's depth this time. */
  readonly queued: number | undefined;
  readonly dead: number | undefined;
  readonly published: number;
  readonly confirmed: number;
  readonly written: number;
  readonly lagSeconds: number | null;
  readonly lastBatchSize: number | null;
}

function readingOf(metrics: MetricsSnapshot, mark: PipelineMark): Reading {
  const totals = totalsOf(metrics);
  return {
    inFlight: metrics.value('flashsale_publishes_in_flight') ?? 0,
    queued: metrics.value('flashsale_queue_depth', PLACED),
    dead: metrics.value('flashsale_queue_depth', DEAD),
    published: totals.published - mark.published,
    confirmed: totals.confirmed - mark.confirmed,
    written: totals.written - mark.written,
    lagSeconds: metrics.value('flashsale_consumer_lag_seconds') ?? null,
    lastBatchSize: metrics.value('flashsale_consumer_last_batch_size') ?? null,
  };
}

const isDrained = (reading: Reading): boolean =>
  reading.inFlight === 0 && reading.queued === 0 && reading.written >= reading.confirmed;

/**
 * Call at the storm's last answer. Polls `/metrics` until the run's orders are all written, or
 * gives up; `null` when nothing of this run went through the pipeline (another strategy's run on
 * a server that has one).
 */
export async function measureDrain(admin: AdminApi, mark: PipelineMark, limits: DrainLimits = DEFAULT_DRAIN_LIMITS): Promise<PipelineDrain | null> {
  const started = performance.now();
  let first: Reading | undefined;
  let last: Reading | undefined;
  let lastMove = started;
  for (;;) {
    const metrics = await scrapeMetrics(admin).catch(() => undefined);
    const now = performance.now();
    if (metrics) {
      const reading = readingOf(metrics, mark);
      if (!first) {
        if (reading.published === 0 && reading.inFlight === 0 && reading.written === 0) return null;
        first = reading;
      }
      if (!last || moved(last, reading)) lastMove = now;
      last = reading;
      if (isDrained(reading)) return drainOf(first, reading, now - started, null);
    }
    if (now - started >= limits.limitMs) return drainOf(first, last, now - started, 'timeout');
    if (last && now - lastMove >= limits.stallMs) return drainOf(first, last, now - started, 'stalled');
    await new Promise((resolve) => setTimeout(resolve, limits.pollMs));
  }
}

function moved(before: Reading, after: Reading): boolean {
  return before.inFlight !== after.inFlight || before.queued !== after.queued || before.written !== after.written;
}

function drainOf(first: Reading | undefined, last: Reading | undefined, waitedMs: number, gaveUp: PipelineDrain['gaveUp']): PipelineDrain {
  const confirmed = last?.confirmed ?? first?.confirmed ?? 0;
  return {
    drained: gaveUp === null,
    drainMs: Math.round(waitedMs),
    gaveUp,
    confirmed,
    queuedAtEnd: first?.queued ?? 0,
    unwrittenAtEnd: Math.max(0, (first?.confirmed ?? 0) - (first?.written ?? 0)),
    lagSeconds: last?.lagSeconds ?? null,
    lastBatchSize: last?.lastBatchSize ?? null,
    deadLetters: last?.dead ?? null,
  };
}

/**
 * Whether the consumer kept pace with the buyers of a run that lasted a while (hot): at the end,
 * nothing was left waiting in the queue and what the consumer had in hand landed within
 * {@link KEPT_UP_DRAIN_MS}.
 */
export function keptUp(drain: PipelineDrain): boolean {
  return drain.drained && drain.queuedAtEnd === 0 && drain.drainMs <= KEPT_UP_DRAIN_MS;
}

/** What the report should say about the drain, beyond its figures. */
export function drainNotes(drain: PipelineDrain, run: { readonly sustained: boolean; readonly wallSeconds: number; readonly salesPerSecond: number }): string[] {
  const notes: string[] = [];
  const waited = `${(drain.drainMs / 1000).toFixed(1)} s`;
  if (drain.gaveUp === 'stalled') {
    notes.push(
      `the order pipeline did not drain: nothing moved for a while, ${waited} after the storm (is the consumer in this server? ` +
        'with WORKER=false or a separate worker its writes are not in this /metrics); the audit may find orders not yet in PostgreSQL',
    );
  } else if (drain.gaveUp === 'timeout') {
    notes.push(`the order pipeline did not drain within ${waited} of the storm; the audit may find orders not yet in PostgreSQL`);
  }
  if ((drain.deadLetters ?? 0) > 0) notes.push(`${drain.deadLetters} messages in the dead-letter queue: orders the consumer could not write`);
  if (run.sustained && !keptUp(drain)) {
    const landed = drain.drained ? `took ${waited} to land` : `had not all landed ${waited} later`;
    const rate = drain.drained ? ` (orders reached PostgreSQL at ~${(drain.confirmed / (run.wallSeconds + drain.drainMs / 1000)).toFixed(0)}/s over the run and its drain)` : '';
    notes.push(
      `the consumer did not keep up: at the end of the run ${drain.unwrittenAtEnd} orders were not yet in PostgreSQL ` +
        `(${drain.queuedAtEnd} still queued) and ${landed}; ${run.salesPerSecond.toFixed(0)} purchases/s is more than it sustains${rate}`,
    );
  }
  return notes;
}

/** One line for the reports: how long until the run's orders were all in PostgreSQL, and the consumer's figures then. */
export function describeDrain(drain: PipelineDrain): string {
  const figures = [
    `at the storm's end ${drain.unwrittenAtEnd} of ${drain.confirmed} orders not yet written (${drain.queuedAtEnd} queued)`,
    `consumer lag ${drain.lagSeconds === null ? 'n/a' : drain.lagSeconds.toFixed(2)} s`,
    `last batch ${drain.lastBatchSize ?? 'n/a'}`,
  ];
  if ((drain.deadLetters ?? 0) > 0) figures.push(`${drain.deadLetters} dead-lettered`);
  const verdict = drain.drained
    ? `drained ${drain.drainMs} ms after the storm`
    : `NOT drained (${drain.gaveUp === 'stalled' ? 'stalled' : 'gave up'} after ${(drain.drainMs / 1000).toFixed(1)} s)`;
  return `order pipeline ${verdict} · ${figures.join(' · ')}`;
}
