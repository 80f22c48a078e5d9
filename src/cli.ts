#!/usr/bin/env node
/**
 * The `flashsale` command: `serve` (the API, or one module as a service of its own), `up` (the
 * split topology for a demo), `worker` and `reconcile` (the order pipeline), `migrate` (apply
 * migrations and exit), `bench`.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from './config.js';
import { isStrategyName } from './inventory/strategy-names.js';
import { EmbeddedPostgresError } from './infra/embedded-postgres.js';
import { SecretError } from './infra/secrets.js';
import { createSystem, migrateAll, modulesHere, openStores, type System } from './system.js';
import { startServiceServer } from './service-server.js';
import { up } from './up.js';
import { startServer, startWorker } from './server.js';
import { orderEventsExchange } from './orders/outbox-relay.js';
import { benchCommand } from './bench/bench.command.js';

const USAGE = `usage: flashsale <command> [options]

commands:
  serve     start the API (embedded PostgreSQL unless DATABASE_URL is set); with
            REDIS_URL and AMQP_URL it also runs the order pipeline's worker, and
            with AMQP_URL the relay of order events to RabbitMQ; with USERS_URL it
            reaches users over HTTP instead of opening its database
            --service users: only the users module, as a service of its own (its
            database, its internal routes on INTERNAL_PORT behind SERVICE_TOKEN)
  up        the split topology here, for a demo: one PostgreSQL (embedded unless
            DATABASE_URL is set), the users service on PORT+1 (internal routes on
            INTERNAL_PORT) and the API on PORT reaching it over HTTP; Ctrl-C stops all
  worker    run only the workers: with REDIS_URL and AMQP_URL the order pipeline's
            consumer and reconciler, and with AMQP_URL the order events relay
  reconcile return stranded units once, print each redis-lua product's drift, exit
  migrate   apply pending migrations to every module database and exit
  bench     replay a load scenario against every strategy and audit it (bench --help)

options:
  --port N          listen port (PORT, default 3000)
  --host H          listen address (HOST, default 127.0.0.1)
  --strategy NAME   default stock strategy (STRATEGY, default atomic)
  --no-worker       serve without the pipeline's worker (WORKER=false)
  --service NAME    serve one module as its own process: users (SERVICE)
  -h, --help        this text`;

function overridesFrom(values: { port?: string; host?: string; strategy?: string }): Partial<Config> {
  const overrides: { -readonly [K in keyof Config]?: Config[K] } = {};
  const problems: string[] = [];
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push(`--port must be 0–65535, got "${values.port}"`);
    else overrides.port = port;
  }
  if (values.host !== undefined) overrides.host = values.host;
  if (values.strategy !== undefined) {
    if (!isStrategyName(values.strategy)) problems.push(`--strategy: unknown strategy "${values.strategy}"`);
    else overrides.strategy = values.strategy;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return overrides;
}

async function main(argv: string[]): Promise<number> {
  // bench has flags of its own (--strategy all, --target, …): it parses them itself.
  if (argv[0] === 'bench') return benchCommand(argv.slice(1), process.env);
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      strategy: { type: 'string' },
      'no-worker': { type: 'boolean' },
      service: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0];
  if (values.help || command === undefined) {
    console.log(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  const env = values.service === undefined ? process.env : { ...process.env, SERVICE: values.service };
  const config = loadConfig(env, { ...overridesFrom(values), ...(values['no-worker'] === true ? { worker: false } : {}) });
  switch (command) {
    case 'serve':
      return serve(config);
    case 'up':
      return up(config);
    case 'worker':
      return workerOnly(config);
    case 'reconcile':
      return reconcileOnce(config);
    case 'migrate':
      return migrateOnly(config);
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function serve(config: Config): Promise<number> {
  if (config.service !== 'all') return serveService(config);
  const server = await startServer(config);
  const { system } = server;
  console.log(`flashsale listening on ${server.url} (default strategy: ${config.strategy})`);
  if (system.adminTokenGenerated) {
    console.log(`admin token (generated, kept in ${config.dataDir}/admin-token): ${system.adminToken}`);
  } else if (config.adminToken === undefined) {
    console.log(`admin token: in ${config.dataDir}/admin-token`);
  }
  await untilSignalled(() => server.close());
  return 0;
}

async function serveService(config: Config): Promise<number> {
  const server = await startServiceServer(config);
  console.log(`flashsale ${config.service} service: health and metrics on ${server.url}, internal routes on ${server.internalUrl}`);
  await untilSignalled(() => server.close());
  return 0;
}

/** Waits for SIGTERM or SIGINT, then runs `stop`. */
async function untilSignalled(stop: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string): void => {
      console.log(`${signal}: finishing in-flight requests, then stopping`);
      stop().then(resolve, (error: unknown) => {
        console.error('shutdown failed', error);
        resolve();
      });
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
}

/**
 * Opens and migrates the stores, the pipeline and the relay, runs `work`, and closes everything
 * after. `needs`: `pipeline` wants REDIS_URL and AMQP_URL, `broker` AMQP_URL alone.
 */
async function withSystem(config: Config, needs: 'pipeline' | 'broker', work: (system: System) => Promise<number>): Promise<number> {
  if (needs === 'pipeline' && (config.redisUrl === undefined || config.amqpUrl === undefined)) {
    console.error('this command needs REDIS_URL and AMQP_URL (the Redis gate and the order pipeline)');
    return 2;
  }
  if (config.amqpUrl === undefined) {
    console.error('this command needs AMQP_URL (the order pipeline, the order events relay)');
    return 2;
  }
  const stores = await openStores(config, console);
  let system: System | undefined;
  try {
    await migrateAll(stores.databases, modulesHere(config));
    system = await createSystem(config, stores, console);
    return await work(system);
  } finally {
    await system?.outboxRelay?.close();
    await system?.pipeline?.close();
    await system?.stockLocks?.close().catch(() => undefined);
    await system?.closeHops().catch(() => undefined);
    await stores.close();
  }
}

function workerOnly(config: Config): Promise<number> {
  return withSystem(config, 'broker', async (system) => {
    const work = [
      ...(system.pipeline ? [`writing placed orders from ${config.queuePrefix}orders.placed; reconciling every ${config.reconcileIntervalMs} ms`] : []),
      ...(system.outboxRelay ? [`relaying order events to ${orderEventsExchange(config.queuePrefix)}`] : []),
    ];
    if (work.length === 0) {
      console.error('flashsale worker: nothing to run (no REDIS_URL for the order pipeline, and OUTBOX_RELAY=false)');
      return 2;
    }
    const worker = startWorker(system, console);
    system.outboxRelay?.start();
    console.log(`flashsale worker: ${work.join('; ')}`);
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    worker?.stop();
    return 0;
  });
}

function reconcileOnce(config: Config): Promise<number> {
  return withSystem(config, 'pipeline', async (system) => {
    if (!system.reconciler) return 2;
    const report = await system.reconciler.run();
    for (const product of report.products) {
      console.log(
        `${product.productId}: ${product.loaded ? '' : 'not loaded in the gate (rebuilt on first use); '}` +
          `stranded ${product.stranded}, returned ${product.returned} units, ` +
          `${product.unitsNotInPostgres} units not yet in PostgreSQL, stock drift ${product.stockDrift}`,
      );
    }
    console.log(`reconcile: ${report.products.length} redis-lua products, ${report.stranded} stranded holds, ${report.returned} units returned`);
    return 0;
  });
}

async function migrateOnly(config: Config): Promise<number> {
  const modules = config.service === 'all' ? modulesHere(config) : [config.service];
  const stores = await openStores(config, console, modules);
  try {
    const applied = await migrateAll(stores.databases, modules);
    console.log(applied.length === 0 ? 'migrations: up to date' : `migrations applied:\n  ${applied.join('\n  ')}`);
    return 0;
  } finally {
    await stores.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Refusals to start that name their cause and remedy are one message, not a stack.
    if (error instanceof ConfigError || error instanceof EmbeddedPostgresError || error instanceof SecretError) console.error(error.message);
    else console.error(error);
    process.exitCode = 1;
  },
);
