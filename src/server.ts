/**
 * Starts the whole system in one process and listens: opens and migrates the stores, seeds the
 * demo product, runs the expiry sweeper and the order events relay, and shuts down in order on
 * SIGTERM/SIGINT (stop accepting, finish in-flight requests, close pools, stop the embedded
 * database).
 */
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from './config.js';
import { appFor, createSystem, migrateAll, modulesHere, openStores, type Log, type System } from './system.js';
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
    await migrateAll(stores.databases, modulesHere(config));
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
      await sweeper.stop();
      worker?.stop();
      await system.outboxRelay?.close();
      await system.pipeline?.close();
      await system.stockLocks?.close().catch(() => undefined);
      await system.closeHops().catch(() => undefined);
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
 * Once a minute: idempotency keys older than 24 hours, and order events relayed more than
 * `OUTBOX_RETENTION_HOURS` ago, are removed.
 */
const CLEANUP_INTERVAL_MS = 60_000;

/** One job of the sweeper; `run` logs what it did. */
interface SweepStep {
  /** What it does, as its log lines name it. */
  readonly name: string;
  /** At most this often (every sweep when unset); a run that fails is tried again at the next sweep. */
  readonly everyMs?: number;
  readonly run: () => Promise<void>;
}

/**
 * Returns expired holds to stock every `sweepIntervalMs`, starting at once (holds that expired
 * while the server was down come back at start-up). One sweep at a time, of independent steps,
 * each run whatever the others did: a store that is down or a fault in one step never keeps the
 * others from running. Orders sweeps first (it asks inventory to expire each held order's
 * allocation and marks the order `expired`, recording the refund owed when users cannot be
 * reached); then the debits of recently ended orders that were never refunded (a payment that
 * debited after its order ended and never came back) are refunded; then the refunds owed are
 * made; then inventory's own sweep returns holds that have no order (a crash before it was
 * recorded); then, once a minute, the clean-ups.
 */
function startSweeper(system: System, app: App): { stop(): Promise<void> } {
  const log = app.log;
  const { orders, inventory } = system;
  // While a store is down every tick fails the same way: one warning per outage, not a line a second.
  const report = changesOnly();
  const steps: readonly SweepStep[] = [
    // Claims left by requests that ended while the store was down: open to their retry now.
    { name: 'abandoned idempotency claims', run: async () => void (await orders.keys.endAbandoned()) },
    {
      name: 'expired orders',
      run: async () => {
        const sweep = await orders.sweepExpired();
        if (sweep.expired > 0) log.info({ orders: sweep.expired }, 'expired orders: holds returned to stock');
        if (sweep.refundsOwed > 0) {
          log.warn({ refunds: sweep.refundsOwed, err: messageOf(sweep.refundFailure) }, 'refunds of expired orders could not be made: recorded owed');
        }
        report('skipped orders', skippedOrders(sweep.failed), (line) => log.error(line, 'expiry sweep skipped orders it could not expire'));
      },
    },
    {
      name: 'debits of ended orders',
      run: async () => {
        const found = await orders.refundEndedDebits();
        if (found.refunded > 0) log.warn({ refunds: found.refunded }, 'debits of ended orders refunded (a payment debited after its order ended)');
      },
    },
    {
      name: 'owed refunds',
      run: async () => {
        const retry = await orders.retryOwedRefunds();
        if (retry.made > 0) log.info({ refunds: retry.made, cents: retry.refundedCents }, 'owed refunds made');
        const waiting = retry.usersDown === undefined ? undefined : { err: messageOf(retry.usersDown) };
        report('owed refunds', waiting, (line) => log.warn({ ...line, owed: orders.owedRefunds.count }, 'owed refunds wait for users'));
        report('failed refunds', skippedOrders(retry.failed), (line) => log.error(line, 'owed refunds failed'));
      },
    },
    {
      name: 'expired holds',
      run: async () => {
        const released = await inventory.sweepExpired();
        if (released.length > 0) log.info({ holds: released.length }, 'expired holds returned to stock');
      },
    },
    {
      name: 'old idempotency keys',
      everyMs: CLEANUP_INTERVAL_MS,
      run: async () => {
        const removed = await orders.keys.cleanup();
        if (removed > 0) log.info({ keys: removed }, 'old idempotency keys removed');
      },
    },
    {
      name: 'relayed order events',
      everyMs: CLEANUP_INTERVAL_MS,
      run: async () => {
        const events = await orders.outbox.removeRelayed(system.config.outboxRetentionHours);
        if (events > 0) log.info({ events }, 'relayed order events past their retention removed');
      },
    },
  ];
  const lastDone = new Map<string, number>();
  const runStep = async (step: SweepStep): Promise<void> => {
    if (step.everyMs !== undefined && Date.now() - (lastDone.get(step.name) ?? -Infinity) < step.everyMs) return;
    try {
      await step.run();
      lastDone.set(step.name, Date.now());
      report(`step:${step.name}`, undefined, () => undefined);
    } catch (error) {
      const topic = `step:${step.name}`;
      if (isStoreFailure(error)) {
        report(topic, { step: step.name, code: (error as { code?: string }).code }, (line) => log.warn(line, 'sweep step waits for the store'));
      } else {
        report(topic, { step: step.name, err: messageOf(error) }, (line) => log.error({ ...line, err: error }, 'sweep step failed'));
      }
    }
  };
  let stopped = false;
  let running: Promise<void> | undefined;
  const sweep = (): void => {
    running ??= (async () => {
      for (const step of steps) if (!stopped) await runStep(step);
    })().finally(() => {
      running = undefined;
    });
  };
  sweep();
  const timer = setInterval(sweep, system.config.sweepIntervalMs);
  timer.unref();
  return {
    // The sweep under way finishes its step before the pools it uses are closed.
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

/** The orders a step skipped, as one log line's facts (the first ten ids, the first error). */
function skippedOrders(failed: readonly { orderId: string; error: unknown }[]): Record<string, unknown> | undefined {
  if (failed.length === 0) return undefined;
  return { orders: failed.length, orderIds: failed.slice(0, 10).map((failure) => failure.orderId), err: messageOf(failed[0]?.error) };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A reporter that logs a topic's facts only when they differ from what it last logged for that
 * topic (`undefined`: all is well, which logs nothing and lets the next trouble be logged again).
 */
function changesOnly(): (topic: string, facts: Record<string, unknown> | undefined, print: (facts: Record<string, unknown>) => void) => void {
  const last = new Map<string, string>();
  return (topic, facts, print) => {
    const key = facts === undefined ? undefined : JSON.stringify(facts);
    if (key === last.get(topic)) return;
    if (key === undefined) last.delete(topic);
    else {
      last.set(topic, key);
      print(facts as Record<string, unknown>);
    }
  };
}
