/**
 * Starts the whole system in one process and listens: opens and migrates the stores, seeds the
 * demo product, runs the expiry sweeper and the order events relay, and shuts down in order on
 * SIGTERM/SIGINT (stop accepting, finish in-flight requests, close pools, stop the embedded
 * database).
 */
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from './config.js';
import { appFor, createSystem, migrateAll, openStores, type Log, type System } from './system.js';
import type { App } from './http/app.js';
import { isStoreFailure } from './infra/store-errors.js';

export interface RunningServer {
  readonly url: string;
  readonly app: App;
  readonly system: System;
  close(): Promise<void>;
}

/** The OS caps the listen backlog at `somaxconn`; ask for that much so a storm is queued, not dropped. */
export function listenBacklog(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim()) || 511;
  } catch {
    return 511;
  }
}

export interface StartOptions {
  /**
   * Sees every answer as it is sent, after serialisation. The tests use it to check each
   * route's statuses and problem codes against the OpenAPI document; `serve` passes nothing.
   */
  readonly observe?: (request: FastifyRequest, reply: FastifyReply, payload: unknown) => void;
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  // Start-up lines (where the data lives, what was rebuilt) are printed whatever the log level.
  const line = (print: (...parts: unknown[]) => void) => (objectOrMessage: unknown, message?: string) =>
    message === undefined ? print(objectOrMessage) : print(message, objectOrMessage);
  const bootLog = { info: line(console.log), warn: line(console.warn), error: line(console.error) };
  const stores = await openStores(config, bootLog);
  let app: App | undefined;
  try {
    await migrateAll(stores.databases);
    const system = await createSystem(config, stores, bootLog);
    app = appFor(system);
    if (config.seedDemo) await seedDemoProduct(system);
    const sweeper = startSweeper(system, app);
    const worker = config.worker ? startWorker(system, app.log) : undefined;
    system.outboxRelay?.start();
    // Responses finished after shutdown began close their connection, so a keep-alive client
    // does not hold the server open until its keep-alive timeout.
    let closing = false;
    app.addHook('preClose', (done) => {
      closing = true;
      done();
    });
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (closing) void reply.header('connection', 'close');
      done(null, payload);
    });
    const { observe } = options;
    if (observe) {
      app.addHook('onSend', (request, reply, payload, done) => {
        observe(request, reply, payload);
        done(null, payload);
      });
    }
    app.addHook('onClose', async () => {
      sweeper.stop();
      worker?.stop();
      await system.outboxRelay?.close();
      await system.pipeline?.close();
      await system.stockLocks?.close().catch(() => undefined);
      await stores.close();
    });
    const url = await app.listen({ port: config.port, host: config.host, backlog: listenBacklog() });
    const running = app;
    return { url, app: running, system, close: () => running.close() };
  } catch (error) {
    if (app) await app.close().catch(() => undefined);
    else await stores.close().catch(() => undefined);
    throw error;
  }
}

/**
 * The order pipeline's worker in this process: the consumer writing placed orders to PostgreSQL,
 * and the reconciler every `reconcileIntervalMs` (stranded units back, the gate caught up).
 * Nothing without a pipeline.
 */
export function startWorker(system: System, log: Pick<Log, 'warn' | 'error'>): { stop(): void } | undefined {
  const { pipeline } = system;
  if (!pipeline) return undefined;
  pipeline.startConsumer(
    (orders) => system.orders.recordPlaced(orders),
    (orders) => system.orders.abandonPlaced(orders),
  );
  const reconciler = system.reconciler;
  let running = false;
  const reconcile = async (): Promise<void> => {
    if (running || !reconciler) return;
    running = true;
    try {
      const report = await reconciler.run();
      if (report.returned > 0) log.warn({ stranded: report.stranded, returned: report.returned }, 'reconcile: stranded units returned to stock');
    } catch (error) {
      if (!isStoreFailure(error)) log.error({ err: error }, 'reconcile failed');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void reconcile(), system.config.reconcileIntervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** A product to try the API with, created once on an empty install. */
async function seedDemoProduct(system: System): Promise<void> {
  const existing = await system.inventory.listProducts();
  if (existing.length > 0) return;
  await system.inventory.createProduct({ name: 'Demo concert ticket', priceCents: 2500, stock: 100, perBuyerLimit: 2 });
}

/**
 * Returns expired holds to stock every `sweepIntervalMs`, starting at once (holds that expired
 * while the server was down come back at start-up). One sweep at a time. Orders sweeps first
 * (it asks inventory to expire each held order's allocation and marks the order `expired`);
 * inventory's own sweep then returns holds that have no order (a crash before it was recorded).
 * Idempotency keys older than 24 hours, and order events relayed more than
 * `OUTBOX_RETENTION_HOURS` ago, are removed once a minute.
 */
const KEY_CLEANUP_INTERVAL_MS = 60_000;

function startSweeper(system: System, app: App): { stop(): void } {
  let running = false;
  let lastCleanup = 0;
  const sweep = async (): Promise<void> => {
    if (running) return;
    running = true;
    try {
      // Claims left by requests that ended while the store was down: open to their retry now.
      await system.orders.keys.endAbandoned();
      const expired = await system.orders.sweepExpired();
      if (expired > 0) app.log.info({ orders: expired }, 'expired orders: holds returned to stock');
      const released = await system.inventory.sweepExpired();
      if (released.length > 0) app.log.info({ holds: released.length }, 'expired holds returned to stock');
      if (Date.now() - lastCleanup >= KEY_CLEANUP_INTERVAL_MS) {
        lastCleanup = Date.now();
        const removed = await system.orders.keys.cleanup();
        if (removed > 0) app.log.info({ keys: removed }, 'old idempotency keys removed');
        const events = await system.orders.outbox.removeRelayed(system.config.outboxRetentionHours);
        if (events > 0) app.log.info({ events }, 'relayed order events past their retention removed');
      }
    } catch (error) {
      // While a store is down every tick fails the same way: once a warning, not a stack a second.
      if (!isStoreFailure(error)) app.log.error({ err: error }, 'expiry sweep failed');
      else app.log.warn({ code: (error as { code?: string }).code }, 'expiry sweep waits for the store');
    } finally {
      running = false;
    }
  };
  void sweep();
  const timer = setInterval(() => void sweep(), system.config.sweepIntervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
