/**
 * The composition root: opens the stores, migrates them, and wires the three modules together
 * in one process (a client is a direct call). The split mode replaces a client with its HTTP
 * implementation here, and nowhere else.
 */
import type { FastifyBaseLogger } from 'fastify';
import { MODULE_NAMES, type Config } from './config.js';
import { openModuleDatabases, type ModuleDatabases } from './infra/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './infra/embedded-postgres.js';
import { timeOrderedIds } from './infra/ids.js';
import { overJson } from './infra/json-hop.js';
import { migrate } from './infra/migrate.js';
import { keptSecret } from './infra/secrets.js';
import { Tokens } from './infra/tokens.js';
import type { InventoryClient } from './inventory/inventory.client.js';
import { InventoryService } from './inventory/inventory.service.js';
import type { OrdersClient } from './orders/orders.client.js';
import type { UsersClient } from './users/users.client.js';
import { buildStrategies, type StrategyRegistry } from './inventory/strategies/index.js';
import { OrdersService } from './orders/orders.service.js';
import { UsersService } from './users/users.service.js';
import { buildApp, type App } from './http/app.js';
import { join } from 'node:path';
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
  readonly users: UsersService;
  readonly inventory: InventoryService;
  readonly orders: OrdersService;
  readonly strategies: StrategyRegistry;
  readonly tokens: Tokens;
  readonly adminToken: string;
  /** True when this start generated the admin token (so `serve` prints it). */
  readonly adminTokenGenerated: boolean;
}

export type Log = Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>;

/** Starts the embedded server when no `DATABASE_URL` is set, then opens the module databases. */
export async function openStores(config: Config, log: Log): Promise<Stores> {
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

export async function migrateAll(databases: ModuleDatabases): Promise<string[]> {
  const applied: string[] = [];
  for (const module of MODULE_NAMES) {
    for (const migration of await migrate(databases[module], module)) applied.push(`${module}/${migration.name}`);
  }
  return applied;
}

export async function createSystem(config: Config, stores: Stores, log: Log): Promise<System> {
  const { databases } = stores;
  const tokenSecret = await keptSecret(config.dataDir, 'token-secret', config.tokenSecret);
  const admin = await keptSecret(config.dataDir, 'admin-token', config.adminToken);
  const tokens = new Tokens(tokenSecret.value);
  const newId = timeOrderedIds();
  const strategies = buildStrategies({
    inventorySql: databases.inventory,
    naiveGapMs: config.naiveGapMs,
    optimisticRetries: config.optimisticRetries,
    redisUrl: config.redisUrl,
    amqpUrl: config.amqpUrl,
  });
  const users = new UsersService({ sql: databases.users, tokens, newId });
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
  const orders = new OrdersService({
    sql: databases.orders,
    inventory: hop(config, inventory, 'inventory'),
    users: hop(config, users, 'users'),
    newId,
    paymentDelayMs: config.paymentDelayMs,
    storeDeadlineMs: config.storeDeadlineMs,
    log,
  });
  return {
    config,
    stores,
    users,
    inventory,
    orders,
    strategies,
    tokens,
    adminToken: admin.value,
    adminTokenGenerated: admin.generated,
  };
}

/** A module's client as its callers reach it (see `Config.moduleHop`). */
function hop<T extends object>(config: Config, client: T, name: string): T {
  return config.moduleHop === 'json' ? overJson(client, name) : client;
}

export function appFor(system: System): App {
  const { databases } = system.stores;
  const { config } = system;
  return buildApp({
    users: hop(config, system.users as UsersClient, 'users'),
    inventory: hop(config, system.inventory as InventoryClient, 'inventory'),
    orders: hop(config, system.orders as OrdersClient, 'orders'),
    tokens: system.tokens,
    adminToken: system.adminToken,
    defaultStrategy: system.config.strategy,
    availableStrategies: () => system.strategies.available(),
    checkStores: async () => {
      const results = await Promise.all(
        MODULE_NAMES.map(async (module) => {
          // Bounded: a server that is restarting may take a connection attempt's whole timeout.
          const answered = await Promise.race([
            databases[module]`select 1`.then(
              () => true,
              () => false,
            ),
            sleep(system.config.storeDeadlineMs).then(() => false),
          ]);
          return answered ? null : `postgres:${module}`;
        }),
      );
      return results.filter((down): down is string => down !== null);
    },
    maxInFlight: system.config.maxInFlight,
    connectionTimeouts: {
      headersMs: system.config.headersTimeoutMs,
      requestMs: system.config.requestTimeoutMs,
      keepAliveMs: system.config.keepAliveTimeoutMs,
    },
    logLevel: system.config.logLevel,
    rateLimitPerSecond: system.config.rateLimitPerSecond,
    holdsExpired: () => system.orders.expiredTotal,
  });
}
