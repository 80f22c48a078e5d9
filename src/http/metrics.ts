/**
 * Prometheus metrics at `/metrics`: purchases by outcome, request latency, remaining stock per
 * product and holds expired, beside prom-client's default process metrics
 * (`flashsale_process_resident_memory_bytes`, `flashsale_process_open_fds`, …, which bench's soak
 * reads). Each app has its own registry, so several apps in one process (the tests) do not collide.
 *
 * @remarks A scrape costs the stores at most one read per figure per `METRICS_CACHE_MS`: the
 * product list is read from inventory then and kept (`cachedReading`), and every other figure of
 * this file is kept in memory as it changes. With `METRICS_TOKEN` set, only a scraper that sends
 * it (or the admin token) is answered (`metricsGuard`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { cachedReading } from '../infra/cached-reading.js';
import { DomainError } from '../infra/errors.js';
import { sameSecret } from '../infra/tokens.js';
import type { Product } from '../inventory/inventory.types.js';

export interface MetricsSources {
  /** Products with their live `remaining` (read at most once per `cacheMs`). */
  readonly products: () => Promise<readonly Product[]>;
  /** Holds expired since start (a running total kept by orders). */
  readonly holdsExpired: () => number;
  /** How long a figure read from a store is kept (`METRICS_CACHE_MS`). */
  readonly cacheMs: number;
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
  const products = cachedReading(sources.products, sources.cacheMs);
  new Gauge({
    name: 'flashsale_remaining_stock',
    help: 'Units free to reserve, per product (read at most once per METRICS_CACHE_MS)',
    labelNames: ['product_id', 'strategy'] as const,
    registers: [registry],
    async collect() {
      const listed = await products();
      // Inventory down and never read: no figures rather than zeros.
      if (listed === undefined) return;
      this.reset();
      for (const product of listed) {
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

/**
 * Guards `/metrics` when `METRICS_TOKEN` is set: `Authorization: Bearer <METRICS_TOKEN>` (or the
 * admin token, which bench sends) is answered, anything else is `401 UNAUTHORIZED`. The figures
 * name products and their stock, and each scrape costs the process a little: a public endpoint
 * should not give either to anyone who asks.
 */
export function metricsGuard(metricsToken: string, adminToken: string): onRequestHookHandler {
  return (request: FastifyRequest, _reply: FastifyReply, done) => {
    const match = /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? '');
    const token = match?.[1];
    if (token === undefined) throw new DomainError('UNAUTHORIZED', '/metrics needs Authorization: Bearer <METRICS_TOKEN>');
    if (!sameSecret(token, metricsToken) && !sameSecret(token, adminToken)) throw new DomainError('UNAUTHORIZED', 'the token is not valid for /metrics');
    done();
  };
}
