/**
 * Prometheus metrics at `/metrics`: purchases by outcome, request latency, remaining stock per
 * product (read from inventory at scrape time) and holds expired, beside prom-client's default
 * process metrics (`flashsale_process_resident_memory_bytes`, `flashsale_process_open_fds`, …,
 * which bench's soak reads). Each app has its own registry, so several apps in one process (the
 * tests) do not collide.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Product } from '../inventory/inventory.types.js';

export interface MetricsSources {
  /** Products with their live `remaining` (read on each scrape). */
  readonly products: () => Promise<readonly Product[]>;
  /** Holds expired since start (a running total kept by orders). */
  readonly holdsExpired: () => number;
}

export interface Metrics {
  readonly registry: Registry;
  readonly purchases: Counter<'outcome'>;
}

const OUTCOME = /"code":"([A-Z_]+)"/;
const ORDER_STATUS = /"status":"(held|paid)"/;

export function registerMetrics(app: FastifyInstance, sources: MetricsSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flashsale_' });

  const purchases = new Counter({
    name: 'flashsale_purchases_total',
    help: 'Purchase requests by outcome: "held" or "paid" for a 201, else the problem code',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'flashsale_http_request_duration_seconds',
    help: 'Time from request to response, by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  let expiredSeen = 0;
  new Counter({
    name: 'flashsale_holds_expired_total',
    help: 'Held orders that expired unpaid (their units went back to stock)',
    registers: [registry],
    collect() {
      const total = sources.holdsExpired();
      if (total > expiredSeen) this.inc(total - expiredSeen);
      expiredSeen = total;
    },
  });
  new Gauge({
    name: 'flashsale_remaining_stock',
    help: 'Units free to reserve, per product',
    labelNames: ['product_id', 'strategy'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const product of await sources.products()) {
        this.set({ product_id: product.id, strategy: product.strategy }, product.remaining);
      }
    },
  });

  app.addHook('onSend', (request, reply, payload, done) => {
    if (request.routeOptions.url === '/v1/purchases' && request.method === 'POST' && typeof payload === 'string') {
      const match = reply.statusCode < 300 ? ORDER_STATUS.exec(payload) : OUTCOME.exec(payload);
      purchases.inc({ outcome: match?.[1] ?? String(reply.statusCode) });
    }
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    latency.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    done();
  });

  return { registry, purchases };
}
