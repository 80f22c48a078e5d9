/**
 * The order pipeline's figures at `/metrics`, read at scrape time: the gate's decisions by code,
 * publishes in flight and their outcomes, the queue's depth and the dead letters, the consumer's
 * lag and batch sizes, the messages it refused unread and the orders it gave up, and what the
 * reconciler found.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Pipeline } from './pipeline.js';
import type { Reconciler } from './reconciler.js';

export interface PipelineMetricsSources {
  readonly pipeline: Pipeline;
  readonly reconciler: Reconciler | undefined;
  /** The gate's reservation decisions since start, by code. */
  readonly decisions: () => ReadonlyMap<string, number>;
  /** Syncs of PostgreSQL's stock the gate refused since start (their terms applied all the same). */
  readonly syncsRefused: () => number;
}

/**
 * Makes a counter follow running totals kept elsewhere (prom-client counters only go up by
 * `inc`): each call adds what the total gained since the last scrape, per label set.
 */
function follower(): (counter: Counter<string>, labels: Record<string, string>, total: number) => void {
  const seen = new Map<string, number>();
  return (counter, labels, total) => {
    const key = JSON.stringify(labels);
    const before = seen.get(key) ?? 0;
    if (total > before) counter.inc(labels, total - before);
    seen.set(key, total);
  };
}

export function registerPipelineMetrics(registry: Registry, sources: PipelineMetricsSources): void {
  const { pipeline } = sources;
  const followDecisions = follower();
  const followPublishes = follower();
  const followMessages = follower();
  const followWritten = follower();
  const followBatches = follower();
  const followReturned = follower();
  const followRejected = follower();
  const followAbandoned = follower();
  const followSyncsRefused = follower();
  new Counter({
    name: 'flashsale_gate_decisions_total',
    help: 'Reservations the Redis gate decided, by code: OK, AGAIN (a retry of an order id), or the refusal',
    labelNames: ['code'] as const,
    registers: [registry],
    collect() {
      for (const [code, total] of sources.decisions()) followDecisions(this, { code }, total);
    },
  });
  new Gauge({
    name: 'flashsale_publishes_in_flight',
    help: 'Placed orders published and not yet confirmed or nacked',
    registers: [registry],
    collect() {
      this.set(pipeline.publisher.stats.inFlight);
    },
  });
  new Counter({
    name: 'flashsale_publishes_total',
    help: 'Placed-order publishes by outcome: confirmed, refused (nacked or broker down: nothing sent), unknown (no confirm in time)',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      const stats = pipeline.publisher.stats;
      for (const outcome of ['confirmed', 'refused', 'unknown'] as const) followPublishes(this, { outcome }, stats[outcome]);
    },
  });
  new Counter({
    name: 'flashsale_publish_messages_total',
    help: 'Messages published: each carries the orders placed in one event-loop turn',
    registers: [registry],
    collect() {
      followMessages(this, {}, pipeline.publisher.stats.messages);
    },
  });
  new Gauge({
    name: 'flashsale_queue_depth',
    help: 'Messages waiting in the order pipeline, by queue: placed (not yet written) and dead (dead-lettered)',
    labelNames: ['queue'] as const,
    registers: [registry],
    async collect() {
      const depth = await pipeline.broker.depth().catch(() => undefined);
      if (!depth) return;
      this.set({ queue: 'placed' }, depth.placed);
      this.set({ queue: 'dead' }, depth.dead);
    },
  });
  new Gauge({
    name: 'flashsale_consumer_lag_seconds',
    help: 'From the gate granting the last order written to its commit in PostgreSQL',
    registers: [registry],
    collect() {
      this.set((pipeline.consumer?.stats.lagMs ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'flashsale_consumer_last_batch_size',
    help: 'Orders written in the consumer\'s last batch',
    registers: [registry],
    collect() {
      this.set(pipeline.consumer?.stats.lastBatchSize ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_consumer_orders_written_total',
    help: 'Placed orders the consumer wrote to PostgreSQL (batches: flashsale_consumer_batches_total)',
    registers: [registry],
    collect() {
      followWritten(this, {}, pipeline.consumer?.stats.written ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_consumer_batches_total',
    help: 'Batches the consumer wrote',
    registers: [registry],
    collect() {
      followBatches(this, {}, pipeline.consumer?.stats.batches ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_consumer_messages_rejected_total',
    help: 'Placed-orders messages this process\'s consumer dead-lettered unread, by reason: unsigned, forged (a signature that does not verify), malformed',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      const rejected = pipeline.consumer?.stats.rejected;
      for (const reason of ['unsigned', 'forged', 'malformed'] as const) followRejected(this, { reason }, rejected?.[reason] ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_consumer_orders_abandoned_total',
    help: 'Placed orders this process\'s consumer could never write and gave up (voided, units back; their message dead-lettered)',
    registers: [registry],
    collect() {
      followAbandoned(this, {}, pipeline.consumer?.stats.abandoned ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_reconcile_returned_units_total',
    help: 'Units of stranded holds the reconciler voided in PostgreSQL and returned to the gate',
    registers: [registry],
    collect() {
      followReturned(this, {}, sources.reconciler?.stats.returned ?? 0);
    },
  });
  new Gauge({
    name: 'flashsale_gate_units_not_in_postgres',
    help: 'At the last reconcile: units the gate has held or paid that PostgreSQL has not yet (in the pipeline, or stranded)',
    registers: [registry],
    collect() {
      this.set(sources.reconciler?.stats.unitsNotInPostgres ?? 0);
    },
  });
  new Gauge({
    name: 'flashsale_gate_stock_drift_units',
    help: "At the last reconcile: units stocked in the gate and not in PostgreSQL's stock, or the reverse, summed over products (0 when they agree)",
    registers: [registry],
    collect() {
      this.set(sources.reconciler?.stats.stockDrift ?? 0);
    },
  });
  new Gauge({
    name: 'flashsale_gate_products_not_loaded',
    help: 'At the last reconcile: redis-lua products the gate did not have whole (their rebuild was started)',
    registers: [registry],
    collect() {
      this.set(sources.reconciler?.stats.notLoaded ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_gate_syncs_refused_total',
    help: "Syncs of PostgreSQL's stock to the gate that the gate refused (fewer units free than the change takes away); their terms were applied, the stock is tried again by the resync",
    registers: [registry],
    collect() {
      followSyncsRefused(this, {}, sources.syncsRefused());
    },
  });
  new Gauge({
    name: 'flashsale_gate_rebuilds_in_progress',
    help: 'Products whose gate keys are missing and wait to be rebuilt from PostgreSQL',
    registers: [registry],
    collect() {
      this.set(pipeline.rebuilds.inProgress);
    },
  });
}
