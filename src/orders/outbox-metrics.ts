/**
 * The outbox's figures at `/metrics`: events this process wrote (by kind) and relayed, publishes
 * that went unconfirmed (all kept in memory as they change), and the backlog every relay has yet
 * to publish (how many, and how old the oldest is: one query, read at most once per `cacheMs`).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { cachedReading } from '../infra/cached-reading.js';
import type { OutboxRelay } from './outbox-relay.js';
import type { Outbox } from './outbox.js';

export interface OutboxMetricsSources {
  readonly outbox: Pick<Outbox, 'backlog' | 'counts'>;
  /** This process's relay; absent when it relays nothing (no `AMQP_URL`, or `OUTBOX_RELAY=false`). */
  readonly relay: OutboxRelay | undefined;
  /** How long the backlog's reading is kept (`METRICS_CACHE_MS`). */
  readonly cacheMs: number;
}

export function registerOutboxMetrics(registry: Registry, sources: OutboxMetricsSources): void {
  const seen = new Map<string, number>();
  /** Adds to `counter` what a running total kept elsewhere gained since the last scrape. */
  const follow = (counter: Counter<string>, name: string, labels: Record<string, string>, total: number): void => {
    const key = `${name}:${JSON.stringify(labels)}`;
    const before = seen.get(key) ?? 0;
    if (total > before) counter.inc(labels, total - before);
    seen.set(key, total);
  };
  new Counter({
    name: 'flashsale_order_events_written_total',
    help: 'Order events this process wrote to the outbox, by kind (held, paid, expired, cancelled)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      for (const [kind, total] of Object.entries(sources.outbox.counts.byKind)) follow(this, 'written', { kind }, total);
    },
  });
  new Counter({
    name: 'flashsale_order_events_relayed_total',
    help: "Order events this process's relay published to RabbitMQ and the broker confirmed",
    registers: [registry],
    collect() {
      follow(this, 'relayed', {}, sources.relay?.stats.relayed ?? 0);
    },
  });
  new Counter({
    name: 'flashsale_order_events_unconfirmed_total',
    help: "Publishes of this process's relay that failed or had no confirm in time (each event goes again)",
    registers: [registry],
    collect() {
      follow(this, 'unconfirmed', {}, sources.relay?.stats.failed ?? 0);
    },
  });
  // Both gauges come from one query, read at most once per period however many scrape (the
  // registry collects every metric at once); a database that is down leaves them as they were.
  const backlog = cachedReading(() => sources.outbox.backlog(), sources.cacheMs);
  new Gauge({
    name: 'flashsale_order_events_unrelayed',
    help: 'Order events in the outbox not yet relayed to RabbitMQ (counted up to 1,000,000; read at most once per METRICS_CACHE_MS)',
    registers: [registry],
    async collect() {
      const found = await backlog();
      if (found) this.set(found.events);
    },
  });
  new Gauge({
    name: 'flashsale_order_events_oldest_unrelayed_seconds',
    help: 'Age of the oldest order event not yet relayed (0: none waiting)',
    registers: [registry],
    async collect() {
      const found = await backlog();
      if (found) this.set(found.oldestSeconds);
    },
  });
}
