/**
 * The composition root: opens the stores, migrates them, and wires the three modules together
 * in one process (a client is a direct call). With `USERS_URL`, users is a service of its own
 * (`service-server.ts`): its client here is the HTTP one, and its database is not opened here.
 * A client is replaced with its HTTP implementation here, and nowhere else.
 */
import { MODULE_NAMES, type Config, type ModuleName } from './config.js';
import { ServiceClient } from './infra/service-client.js';
import { USERS_METHODS } from './users/users.methods.js';
import { openLoopbackHop } from './loopback-hop.js';
import { answersWithin, openModuleDatabases, type ModuleDatabases } from './infra/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './infra/embedded-postgres.js';
import { timeOrderedIds } from './infra/ids.js';
import { overJson } from './infra/json-hop.js';
import { migrate } from './infra/migrate.js';
import { ADMIN_TOKEN, keptSecret, PIPELINE_SECRET, TOKEN_SECRET } from './infra/secrets.js';
import { Tokens } from './infra/tokens.js';
import type { InventoryClient } from './inventory/inventory.client.js';
import { InventoryService } from './inventory/inventory.service.js';
import type { OrdersClient } from './orders/orders.client.js';
import type { UsersClient } from './users/users.client.js';
import { buildStrategies, type StrategyRegistry } from './inventory/strategies/index.js';
import { OrdersService } from './orders/orders.service.js';
import { UsersService } from './users/users.service.js';
import { buildApp, type App, type AppDeps } from './http/app.js';
import { RedisLuaStrategy } from './inventory/strategies/redis-lua.strategy.js';
import { registerPipelineMetrics } from './pipeline/pipeline-metrics.js';
import { join } from 'node:path';
import type { PlacedOrder } from './pipeline/order-events.js';
import { Pipeline } from './pipeline/pipeline.js';
import { MessageSigner } from './pipeline/message-signature.js';
import { OutboxRelay, orderEventsExchange } from './orders/outbox-relay.js';
import { registerOutboxMetrics } from './orders/outbox-metrics.js';
import { registerOwedRefundMetrics } from './orders/owed-refunds-metrics.js';
import { Reconciler } from './pipeline/reconciler.js';
import { StockLocks } from './inventory/redis/stock-locks.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Stores {
  readonly databases: ModuleDatabases;
  readonly embedded: EmbeddedDatabase | undefined;
  /** Closes pools, then stops the embedded server if we started it. */
  close(): Promise<void>;
}

export interface System {
  readonly config: Config;
  readonly stores: Stores;
  /** In this process, or the users service over HTTP (`USERS_URL`). */
  readonly users: UsersClient;
  /** The clients of services reached over HTTP (another process's, or the loopback hop's), for `/readyz`. */
  readonly services: readonly ServiceClient[];
  /** How the HTTP app reaches each module (see `Config.moduleHop`). */
  readonly clients: { readonly users: UsersClient; readonly inventory: InventoryClient; readonly orders: OrdersClient };
  /** Closes the HTTP clients (and the loopback hop's routes) this system opened. */
  closeHops(): Promise<void>;
  readonly inventory: InventoryService;
  readonly orders: OrdersService;
  readonly strategies: StrategyRegistry;
  /** The Redis gate and the order pipeline, when `REDIS_URL` and `AMQP_URL` are set. */
  readonly pipeline: Pipeline | undefined;
  /** The redis-lock strategy's locks, when `REDIS_URL` is set. */
  readonly stockLocks: StockLocks | undefined;
  /** Returns stranded units and catches the gate up (with the pipeline). */
  readonly reconciler: Reconciler | undefined;
  /**
   * Publishes the order events to RabbitMQ, when `AMQP_URL` is set and `OUTBOX_RELAY` is on. Built
   * here, started by `serve` and `flashsale worker`; its `close` closes its broker connection.
   */
  readonly outboxRelay: OutboxRelay | undefined;
  readonly tokens: Tokens;
  readonly adminToken: string;
  /** True when this start generated the admin token (so `serve` prints it). */
  readonly adminTokenGenerated: boolean;
}

/** Messages alone, or an object of facts with a message (as pino takes them). */
export interface Log {
  info(objectOrMessage: unknown, message?: string): void;
  warn(objectOrMessage: unknown, message?: string): void;
  error(objectOrMessage: unknown, message?: string): void;
}

/** The modules whose databases this process opens: all three, but a module served by a process of its own. */
export function modulesHere(config: Config): readonly ModuleName[] {
  return MODULE_NAMES.filter((module) => !(module === 'users' && config.usersUrl !== undefined));
}

/** Starts the embedded server when no `DATABASE_URL` is set, then opens the module databases. */
export async function openStores(config: Config, log: Log, modules: readonly ModuleName[] = modulesHere(config)): Promise<Stores> {
  let embedded: EmbeddedDatabase | undefined;
  let baseUrl = config.databaseUrl;
  if (baseUrl === undefined) {
    embedded = await startEmbeddedPostgres({ directory: join(config.dataDir, 'pg'), announce: (line) => log.info(line) });
    baseUrl = embedded.url;
  }
  try {
    const databases = await openModuleDatabases({
      baseUrl,
      prefix: config.databasePrefix,
      overrides: config.moduleDatabaseUrls,
      poolSize: config.dbPoolSize,
      modules,
    });
    return {
      databases,
      embedded,
      close: async () => {
        await databases.close();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}

export async function migrateAll(databases: ModuleDatabases, modules: readonly ModuleName[] = MODULE_NAMES): Promise<string[]> {
  const applied: string[] = [];
  for (const module of modules) {
    for (const migration of await migrate(databases[module], module)) applied.push(`${module}/${migration.name}`);
  }
  return applied;
}

export async function createSystem(config: Config, stores: Stores, log: Log): Promise<System> {
  const { databases } = stores;
  const tokenSecret = await keptSecret(config.dataDir, TOKEN_SECRET, config.tokenSecret);
  // Every process of the install signs and checks placed-orders messages with the same secret.
  const signer =
    config.redisUrl === undefined || config.amqpUrl === undefined
      ? undefined
      : new MessageSigner((await keptSecret(config.dataDir, PIPELINE_SECRET, config.pipelineSecret)).value, config.pipelineSecretPrevious);
  const admin = await keptSecret(config.dataDir, ADMIN_TOKEN, config.adminToken);
  const tokens = new Tokens(tokenSecret.value);
  const newId = timeOrderedIds();
  const onRedisError = onceEach((error: Error) => log.warn({ err: error.message }, 'Redis connection error; reconnecting'));
  const stockLocks =
    config.redisUrl === undefined
      ? undefined
      : await StockLocks.open(config.redisUrl, {
          keyPrefix: config.redisKeyPrefix,
          ttlMs: config.redisLockTtlMs,
          waitMs: config.redisLockWaitMs,
          onError: onRedisError,
        });
  const pipeline =
    signer === undefined
      ? undefined
      : await Pipeline.open(config, databases.inventory, signer, log, onRedisError).catch(async (error: unknown) => {
          await stockLocks?.close();
          throw error;
        });
  const strategies = buildStrategies({
    redisLocks: stockLocks,
    redisLua: pipeline === undefined ? undefined : { gate: pipeline.gate, rebuilds: pipeline.rebuilds, warn: (message: string) => log.warn(message) },
    inventorySql: databases.inventory,
    naiveGapMs: config.naiveGapMs,
    optimisticRetries: config.optimisticRetries,
    queue: {
      groupMax: config.queueGroupMax,
      capacity: config.queueCapacity,
      waitMs: config.queueWaitMs,
      soldOutMemoryMs: config.soldOutHintMs,
    },
    redisUrl: config.redisUrl,
    amqpUrl: config.amqpUrl,
  });
  const remoteUsers =
    config.usersUrl === undefined || config.serviceToken === undefined
      ? undefined
      : new ServiceClient('users', { url: config.usersUrl, token: config.serviceToken, timeoutMs: config.serviceCallTimeoutMs });
  const users: UsersClient =
    remoteUsers?.client(USERS_METHODS) ?? new UsersService({ sql: databases.users, tokens, tokenTtlSeconds: config.tokenTtlSeconds, newId });
  const inventory = new InventoryService({
    sql: databases.inventory,
    strategies,
    defaultStrategy: config.strategy,
    defaultHoldSeconds: config.holdSeconds,
    soldOutHintMs: config.soldOutHintMs,
    reserveLanes: config.reserveLanes,
    newId,
    warn: (message) => log.warn(message),
  });
  // Its routes must exist before it listens, so it finds orders (built below, with its clients)
  // only when a call comes.
  const loopback =
    config.moduleHop === 'http'
      ? await openLoopbackHop(
          {
            users: () => users,
            inventory: () => inventory,
            orders: () => orders,
          },
          config.serviceCallTimeoutMs,
        )
      : undefined;
  const usersHere = remoteUsers === undefined;
  const clients = {
    // A users service of its own is reached over its own hop already, never through the loopback too.
    users: usersHere ? (loopback?.users ?? hop(config, users, 'users')) : users,
    inventory: loopback?.inventory ?? hop(config, inventory as InventoryClient, 'inventory'),
  };
  const orders: OrdersService = new OrdersService({
    sql: databases.orders,
    inventory: clients.inventory,
    users: clients.users,
    newId,
    paymentDelayMs: config.paymentDelayMs,
    storeDeadlineMs: config.storeDeadlineMs,
    keyRetentionSeconds: config.keyRetentionSeconds,
    ...(pipeline === undefined
      ? {}
      : { publish: (order: PlacedOrder) => pipeline.publisher.publish(order), pipelineWaitMs: Math.min(config.confirmTimeoutMs, 2_000) }),
    log,
  });
  const reconciler =
    pipeline === undefined
      ? undefined
      : new Reconciler({
          gate: pipeline.gate,
          sql: databases.inventory,
          inventory,
          confirmTimeoutMs: config.confirmTimeoutMs,
          rebuild: (productId) => pipeline.rebuilds.start(productId),
        });
  // Last: nothing after it can fail and leave its connection open.
  const outboxRelay =
    config.amqpUrl === undefined || !config.outboxRelay
      ? undefined
      : OutboxRelay.open(config.amqpUrl, {
          sql: databases.orders,
          exchange: orderEventsExchange(config.queuePrefix),
          confirmTimeoutMs: config.confirmTimeoutMs,
          log,
        });
  return {
    pipeline,
    stockLocks,
    reconciler,
    outboxRelay,
    config,
    stores,
    users,
    services: [...(remoteUsers === undefined ? [] : [remoteUsers]), ...(loopback?.services ?? [])],
    clients: { ...clients, orders: loopback?.orders ?? hop(config, orders as OrdersClient, 'orders') },
    closeHops: async () => {
      await remoteUsers?.close();
      await loopback?.close();
    },
    inventory,
    orders,
    strategies,
    tokens,
    adminToken: admin.value,
    adminTokenGenerated: admin.generated,
  };
}

/** Calls `report` for an error unless the last one reported had the same message (one line per outage, not per retry). */
function onceEach(report: (error: Error) => void): (error: Error) => void {
  let last = '';
  return (error) => {
    if (error.message === last) return;
    last = error.message;
    report(error);
  };
}

/** How long the audit waits for the order pipeline to drain before it reads the stores anyway. */
const AUDIT_DRAIN_WAIT_MS = 15_000;

/** What the HTTP app takes from the order pipeline: the audit's wait for it, and its metrics. */
function pipelineDeps(system: System, pipeline: Pipeline): Pick<AppDeps, 'beforeAudit' | 'registerPipelineMetrics'> {
  const strategy = system.strategies.get('redis-lua');
  const decisions = strategy instanceof RedisLuaStrategy ? strategy.decisions : new Map<string, number>();
  const syncsRefused = (): number => (strategy instanceof RedisLuaStrategy ? strategy.syncsRefused : 0);
  return {
    beforeAudit: async () => {
      const until = Date.now() + AUDIT_DRAIN_WAIT_MS;
      while (Date.now() < until && !(await pipeline.drained().catch(() => false))) await sleep(50);
    },
    registerPipelineMetrics: (registry) =>
      registerPipelineMetrics(registry, { pipeline, reconciler: system.reconciler, decisions: () => decisions, syncsRefused }),
  };
}

/** A module's client as its callers reach it (see `Config.moduleHop`). */
function hop<T extends object>(config: Config, client: T, name: string): T {
  return config.moduleHop === 'json' ? overJson(client, name) : client;
}

export function appFor(system: System): App {
  const { databases } = system.stores;
  const { config } = system;
  const here = modulesHere(config);
  return buildApp({
    ...system.clients,
    tokens: system.tokens,
    revocationRefreshMs: config.revocationRefreshMs,
    adminToken: system.adminToken,
    defaultStrategy: system.config.strategy,
    availableStrategies: () => system.strategies.available(),
    checkStores: async () => {
      const results = await Promise.all(
        here.map(async (module) => ((await answersWithin(databases[module], system.config.storeDeadlineMs)) ? null : `postgres:${module}`)),
      );
      const down = results.filter((store): store is string => store !== null);
      for (const service of system.services) if (!(await service.ready())) down.push(`service:${service.service}`);
      const { pipeline } = system;
      if (pipeline) {
        const redisUp = await Promise.race([pipeline.gate.ping().then(() => true, () => false), sleep(system.config.storeDeadlineMs).then(() => false)]);
        if (!redisUp) down.push('redis');
        if (!pipeline.broker.ready) down.push('rabbitmq');
      }
      return down;
    },
    ...(system.pipeline === undefined ? {} : pipelineDeps(system, system.pipeline)),
    registerOutboxMetrics: (registry) => {
      registerOutboxMetrics(registry, { outbox: system.orders.outbox, relay: system.outboxRelay, cacheMs: config.metricsCacheMs });
      registerOwedRefundMetrics(registry, system.orders.owedRefunds);
    },
    maxInFlight: system.config.maxInFlight,
    connectionTimeouts: {
      headersMs: system.config.headersTimeoutMs,
      requestMs: system.config.requestTimeoutMs,
      keepAliveMs: system.config.keepAliveTimeoutMs,
    },
    logLevel: system.config.logLevel,
    rateLimitPerSecond: system.config.rateLimitPerSecond,
    buyerMaxInFlight: system.config.buyerMaxInFlight,
    signupRateLimit: { perMinute: config.signupRateLimitPerMinute, trustedProxyHeader: config.trustedProxyHeader },
    holdsExpired: () => system.orders.expiredTotal,
    ...(config.metricsToken === undefined ? {} : { metricsToken: config.metricsToken }),
    metricsCacheMs: config.metricsCacheMs,
  });
}
