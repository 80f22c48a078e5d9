/**
 * All configuration, read in one place. Only this file reads `process.env`: it validates every
 * variable, reports every bad one at once, and returns one typed, frozen object.
 */
import { ADMIN_TOKEN, PIPELINE_SECRET, TOKEN_SECRET } from './infra/secrets.js';
import { STRATEGY_NAMES, type StrategyName } from './inventory/strategy-names.js';
import { KEY_RETENTION_SECONDS } from './infra/key-retention.js';
import { SERVICE_TOKEN_MIN_LENGTH } from './infra/service-methods.js';

export interface Config {
  readonly port: number;
  readonly host: string;
  /** A server the app connects to; `undefined` starts the embedded PostgreSQL. */
  readonly databaseUrl: string | undefined;
  /** Per-module overrides of `databaseUrl` (each names the module's own database). */
  readonly moduleDatabaseUrls: Readonly<Record<ModuleName, string | undefined>>;
  /** Prefix of the module databases created on `databaseUrl`: `<prefix>users`, … */
  readonly databasePrefix: string;
  readonly dataDir: string;
  readonly adminToken: string | undefined;
  readonly tokenSecret: string | undefined;
  /**
   * Signs every placed-orders message (HMAC-SHA256), so the consumer writes only what a process of
   * this install published; `undefined`: generated and kept under the data directory.
   */
  readonly pipelineSecret: string | undefined;
  /** The secret before a rotation: messages it signed are still accepted while they drain. */
  readonly pipelineSecretPrevious: string | undefined;
  /**
   * Whether the consumer writes placed-orders messages that carry no signature (those published
   * before signing existed). Off: such a message is dead-lettered. For an upgrade's drain only.
   */
  readonly pipelineAcceptUnsigned: boolean;
  /** How long an access token is accepted after it is issued. */
  readonly tokenTtlSeconds: number;
  /** How often each process asks users for sessions ended since it last asked. */
  readonly revocationRefreshMs: number;
  /** Sign-ups one client address may send per minute; 0 turns the limit off. */
  readonly signupRateLimitPerMinute: number;
  /** Lower-case name of the header a trusted reverse proxy writes the client address to; `undefined`: the socket's address. */
  readonly trustedProxyHeader: string | undefined;
  readonly strategy: StrategyName;
  readonly holdSeconds: number;
  readonly paymentDelayMs: number;
  readonly maxInFlight: number;
  /** A client must send a request's line and headers within this many ms of starting it. */
  readonly headersTimeoutMs: number;
  /** …and the whole request, body included, within this many ms (at least `headersTimeoutMs`). */
  readonly requestTimeoutMs: number;
  /** A kept-alive connection idle this long after an answer is closed (Node adds 1 s to it). */
  readonly keepAliveTimeoutMs: number;
  readonly dbPoolSize: number;
  readonly sweepIntervalMs: number;
  /** Requests a buyer may send per second to the buyer routes (20 by default); 0 turns the limiter off. */
  readonly rateLimitPerSecond: number;
  /** Requests of one buyer this process handles at once (4 by default); 0: no cap. */
  readonly buyerMaxInFlight: number;
  /** How long this process reuses a "sold out, 0 left" answer without asking the store; 0: never. */
  readonly soldOutHintMs: number;
  /** Fewest reservations of one product this process has with the store at once (more while more units are left); 0: no limit. */
  readonly reserveLanes: number;
  readonly naiveGapMs: number;
  readonly optimisticRetries: number;
  /** The queue strategy: requests decided in one statement at most. */
  readonly queueGroupMax: number;
  /** The queue strategy: requests one product's line holds before it answers `503 OVERLOADED`. */
  readonly queueCapacity: number;
  /** The queue strategy: how long a request may wait in line before `503 OVERLOADED` (nothing done). */
  readonly queueWaitMs: number;
  readonly redisUrl: string | undefined;
  readonly amqpUrl: string | undefined;
  /** Prefix of every Redis key of this install (`fs:`). */
  readonly redisKeyPrefix: string;
  /** Prefix of this install's RabbitMQ queue names (`flashsale.`). */
  readonly queuePrefix: string;
  /** How long a placed order's publish waits for the broker's confirm before the buyer hears `OUTCOME_UNKNOWN`. */
  readonly confirmTimeoutMs: number;
  /** The redis-lock strategy: how long a lock lives if its holder never releases it. */
  readonly redisLockTtlMs: number;
  /** The redis-lock strategy: how long a buyer waits for the lock before `409 CONTENTION`. */
  readonly redisLockWaitMs: number;
  /** Whether `serve` also runs the pipeline's consumer and reconciler (`flashsale worker` runs them alone). */
  readonly worker: boolean;
  /** How often the worker returns stranded units and catches the gate up with PostgreSQL. */
  readonly reconcileIntervalMs: number;
  /** Whether `serve` and `flashsale worker` relay the order events to RabbitMQ (only with `amqpUrl`). */
  readonly outboxRelay: boolean;
  /** Relayed order events older than this many hours are deleted; unrelayed ones are kept until relayed. */
  readonly outboxRetentionHours: number;
  readonly seedDemo: boolean;
  readonly logLevel: string;
  /**
   * How the modules reach each other in one process: `direct` calls, or `json`, every call's
   * arguments, result and error through JSON as an HTTP hop would carry them (the tests run so,
   * proving the module contracts carry plain data only).
   */
  readonly moduleHop: ModuleHop;
  /** How long a purchase, payment or readiness check waits for the stores before it answers (503). */
  readonly storeDeadlineMs: number;
  /** How long an `Idempotency-Key` keeps its first definitive outcome, in PostgreSQL and in the Redis gate alike. */
  readonly keyRetentionSeconds: number;
  /** When set, `/metrics` answers only `Authorization: Bearer <this>` (or the admin token). */
  readonly metricsToken: string | undefined;
  /** How long `/metrics` keeps the figures it reads from a store (the products' stock, the outbox's backlog); 0: read at every scrape. */
  readonly metricsCacheMs: number;
  /**
   * What `serve` runs: every module in one process (`all`), or one module as a service of its
   * own (`users`: its database, its internal routes on `internalPort`, its health and metrics).
   */
  readonly service: 'all' | 'users';
  /** The token every process of an install shows the others' internal routes (`SERVICE_TOKEN`, ≥ 32 characters). */
  readonly serviceToken: string | undefined;
  /** Where a service's internal routes listen (`INTERNAL_PORT`, `INTERNAL_HOST`: 127.0.0.1 unless told otherwise). */
  readonly internalPort: number;
  readonly internalHost: string;
  /** The users service's internal routes (`USERS_URL`); set: this process reaches users over HTTP and opens no users database. */
  readonly usersUrl: string | undefined;
  /** How long one call to another service may take: above `QUEUE_WAIT_MS`, below `STORE_DEADLINE_MS`. */
  readonly serviceCallTimeoutMs: number;
}

export type ModuleHop = 'direct' | 'json' | 'http';

export type ModuleName = 'users' | 'inventory' | 'orders';
export const MODULE_NAMES: readonly ModuleName[] = ['users', 'inventory', 'orders'];

/** Thrown with every problem found, so a bad start-up names all the variables at once. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads and validates the configuration from `env` (default `process.env`); `overrides` (from
 * CLI flags) win over the environment.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const problems: string[] = [];
  const text = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const url = (name: string, protocols: readonly string[]): string | undefined => {
    const raw = text(name);
    if (raw === undefined) return undefined;
    try {
      const parsed = new URL(raw);
      if (!protocols.includes(parsed.protocol)) {
        problems.push(`${name} must be a ${protocols.join(' or ')} URL, got "${parsed.protocol}"`);
      }
    } catch {
      problems.push(`${name} is not a valid URL`);
    }
    return raw;
  };
  const pgProtocols = ['postgres:', 'postgresql:'];

  const strategyRaw = text('STRATEGY') ?? 'atomic';
  if (!(STRATEGY_NAMES as readonly string[]).includes(strategyRaw)) {
    problems.push(`STRATEGY must be one of ${STRATEGY_NAMES.join(', ')}, got "${strategyRaw}"`);
  }
  const adminToken = text('ADMIN_TOKEN');
  if (adminToken !== undefined && adminToken.length < ADMIN_TOKEN.minLength) {
    problems.push(`ADMIN_TOKEN must be at least ${ADMIN_TOKEN.minLength} characters`);
  }
  const serviceToken = text('SERVICE_TOKEN');
  if (serviceToken !== undefined && serviceToken.length < SERVICE_TOKEN_MIN_LENGTH) {
    problems.push(`SERVICE_TOKEN must be at least ${SERVICE_TOKEN_MIN_LENGTH} characters`);
  }
  const service = text('SERVICE') ?? 'all';
  if (service !== 'all' && service !== 'users') {
    problems.push(`SERVICE (serve --service) must be users, or all (every module in one process), got "${service}"`);
  }
  const usersUrl = url('USERS_URL', ['http:', 'https:']);
  const metricsToken = text('METRICS_TOKEN');
  if (metricsToken !== undefined && metricsToken.length < ADMIN_TOKEN.minLength) {
    problems.push(`METRICS_TOKEN must be at least ${ADMIN_TOKEN.minLength} characters`);
  }
  const tokenSecret = text('TOKEN_SECRET');
  if (tokenSecret !== undefined && tokenSecret.length < TOKEN_SECRET.minLength) {
    problems.push(`TOKEN_SECRET must be at least ${TOKEN_SECRET.minLength} characters`);
  }
  const pipelineSecret = text('PIPELINE_SECRET');
  if (pipelineSecret !== undefined && pipelineSecret.length < PIPELINE_SECRET.minLength) {
    problems.push(`PIPELINE_SECRET must be at least ${PIPELINE_SECRET.minLength} characters`);
  }
  const pipelineSecretPrevious = text('PIPELINE_SECRET_PREVIOUS');
  if (pipelineSecretPrevious !== undefined && pipelineSecretPrevious.length < PIPELINE_SECRET.minLength) {
    problems.push(`PIPELINE_SECRET_PREVIOUS must be at least ${PIPELINE_SECRET.minLength} characters`);
  }
  const acceptUnsigned = text('PIPELINE_ACCEPT_UNSIGNED') ?? 'false';
  if (!['true', 'false', '1', '0'].includes(acceptUnsigned)) problems.push(`PIPELINE_ACCEPT_UNSIGNED must be true or false, got "${acceptUnsigned}"`);
  const trustedProxyHeader = text('TRUSTED_PROXY_HEADER')?.toLowerCase();
  // An HTTP field name (RFC 9110 token).
  if (trustedProxyHeader !== undefined && !/^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$/.test(trustedProxyHeader)) {
    problems.push(`TRUSTED_PROXY_HEADER must be an HTTP header name, e.g. x-forwarded-for, got "${trustedProxyHeader}"`);
  }
  const prefix = text('DATABASE_PREFIX') ?? 'flashsale_';
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
    problems.push(`DATABASE_PREFIX must be lower-case letters, digits and _ (at most 41), got "${prefix}"`);
  }
  const seed = text('SEED_DEMO') ?? 'true';
  if (!['true', 'false', '1', '0'].includes(seed)) problems.push(`SEED_DEMO must be true or false, got "${seed}"`);
  const moduleHop = text('MODULE_HOP') ?? 'direct';
  if (moduleHop !== 'direct' && moduleHop !== 'json' && moduleHop !== 'http') problems.push(`MODULE_HOP must be direct, json or http, got "${moduleHop}"`);
  const worker = text('WORKER') ?? 'true';
  if (!['true', 'false', '1', '0'].includes(worker)) problems.push(`WORKER must be true or false, got "${worker}"`);
  const outboxRelay = text('OUTBOX_RELAY') ?? 'true';
  if (!['true', 'false', '1', '0'].includes(outboxRelay)) problems.push(`OUTBOX_RELAY must be true or false, got "${outboxRelay}"`);
  const redisKeyPrefix = text('REDIS_KEY_PREFIX') ?? 'fs:';
  if (/[{}\s]/.test(redisKeyPrefix)) problems.push(`REDIS_KEY_PREFIX must not contain braces or spaces, got "${redisKeyPrefix}"`);
  const queuePrefix = text('QUEUE_PREFIX') ?? 'flashsale.';
  if (!/^[A-Za-z0-9._:-]{1,100}$/.test(queuePrefix)) problems.push(`QUEUE_PREFIX must be letters, digits and . _ : - (at most 100), got "${queuePrefix}"`);
  const logLevel = text('LOG_LEVEL') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${logLevel}"`);
  }

  // Two cores: more connections than this only add lock waits on a hot product row (bench: hot).
  const dbPoolSize = integer('DB_POOL_SIZE', 10, 1, 500);
  // Buyers send a request whole at once; 10 s covers a slow link, and a server busy with a storm
  // reads waiting headers within a second or two. Node's own defaults are 60 s and 300 s.
  const headersTimeoutMs = integer('HEADERS_TIMEOUT_MS', 10_000, 100, 600_000);
  const requestTimeoutMs = integer('REQUEST_TIMEOUT_MS', 30_000, 100, 600_000);
  if (requestTimeoutMs < headersTimeoutMs) {
    problems.push(`REQUEST_TIMEOUT_MS (${requestTimeoutMs}) must be at least HEADERS_TIMEOUT_MS (${headersTimeoutMs})`);
  }
  const config: Config = {
    port: integer('PORT', 3000, 0, 65535),
    host: text('HOST') ?? '127.0.0.1',
    databaseUrl: url('DATABASE_URL', pgProtocols),
    moduleDatabaseUrls: {
      users: url('USERS_DATABASE_URL', pgProtocols),
      inventory: url('INVENTORY_DATABASE_URL', pgProtocols),
      orders: url('ORDERS_DATABASE_URL', pgProtocols),
    },
    databasePrefix: prefix,
    dataDir: text('FLASHSALE_DATA_DIR') ?? '.flashsale',
    adminToken,
    tokenSecret,
    pipelineSecret,
    pipelineSecretPrevious,
    pipelineAcceptUnsigned: acceptUnsigned === 'true' || acceptUnsigned === '1',
    tokenTtlSeconds: integer('TOKEN_TTL_SECONDS', 3600, 1, 2_592_000),
    revocationRefreshMs: integer('REVOCATION_REFRESH_MS', 2000, 50, 60_000),
    // A household or an office behind one address signs up a few accounts, not dozens a minute.
    signupRateLimitPerMinute: integer('SIGNUP_RATE_LIMIT_PER_MINUTE', 20, 0, 1_000_000),
    trustedProxyHeader,
    strategy: strategyRaw as StrategyName,
    holdSeconds: integer('HOLD_SECONDS', 300, 1, 86_400),
    paymentDelayMs: integer('PAYMENT_DELAY_MS', 0, 0, 60_000),
    maxInFlight: integer('MAX_IN_FLIGHT', 20_000, 1, 1_000_000),
    headersTimeoutMs,
    requestTimeoutMs,
    // Node's default: above the longest pause between one bench buyer's requests on its kept-alive
    // connection (a checkout loser trying again: 1.5 s), and short enough that a drop's idle
    // connections are gone in seconds, not Fastify's 72 s.
    keepAliveTimeoutMs: integer('KEEP_ALIVE_TIMEOUT_MS', 5_000, 100, 600_000),
    dbPoolSize,
    sweepIntervalMs: integer('SWEEP_INTERVAL_MS', 1000, 50, 60_000),
    // Above what a person clicking (or a client retrying as told) ever sends; a script holding a
    // drop for one account is slowed to it.
    rateLimitPerSecond: integer('RATE_LIMIT_PER_SECOND', 20, 0, 1_000_000),
    // More than a storefront sends at once (a purchase, its order, the buyer's page); a script's
    // burst of slow requests (payments of unknown orders, lock waits) is held to it.
    buyerMaxInFlight: integer('BUYER_MAX_IN_FLIGHT', 4, 0, 10_000),
    soldOutHintMs: integer('SOLD_OUT_HINT_MS', 250, 0, 60_000),
    // As wide as the pool: near the end of the stock, more at once only queue on the product's row.
    reserveLanes: integer('RESERVE_LANES', dbPoolSize, 0, 500),
    naiveGapMs: integer('NAIVE_GAP_MS', 5, 0, 10_000),
    optimisticRetries: integer('OPTIMISTIC_RETRIES', 3, 0, 100),
    queueGroupMax: integer('QUEUE_GROUP_MAX', 500, 1, 10_000),
    queueCapacity: integer('QUEUE_CAPACITY', 20_000, 1, 1_000_000),
    queueWaitMs: integer('QUEUE_WAIT_MS', 5_000, 10, 120_000),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    amqpUrl: url('AMQP_URL', ['amqp:', 'amqps:']),
    redisKeyPrefix,
    queuePrefix,
    confirmTimeoutMs: integer('CONFIRM_TIMEOUT_MS', 5_000, 100, 60_000),
    redisLockTtlMs: integer('REDIS_LOCK_TTL_MS', 2_000, 10, 60_000),
    redisLockWaitMs: integer('REDIS_LOCK_WAIT_MS', 1_000, 0, 60_000),
    worker: worker === 'true' || worker === '1',
    reconcileIntervalMs: integer('RECONCILE_INTERVAL_MS', 10_000, 100, 3_600_000),
    outboxRelay: outboxRelay === 'true' || outboxRelay === '1',
    // A week: a consumer that falls behind over a weekend can still page back through the feed.
    outboxRetentionHours: integer('OUTBOX_RETENTION_HOURS', 168, 0, 87_600),
    seedDemo: seed === 'true' || seed === '1',
    logLevel,
    moduleHop: moduleHop as ModuleHop,
    storeDeadlineMs: integer('STORE_DEADLINE_MS', 10_000, 100, 120_000),
    keyRetentionSeconds: integer('KEY_RETENTION_SECONDS', KEY_RETENTION_SECONDS, 60, 30 * 24 * 60 * 60),
    metricsToken,
    // A scraper every second or two, or many of them, costs the stores one read per figure per period.
    metricsCacheMs: integer('METRICS_CACHE_MS', 5_000, 0, 300_000),
    service: service as Config['service'],
    serviceToken,
    internalPort: integer('INTERNAL_PORT', 3_100, 0, 65_535),
    internalHost: text('INTERNAL_HOST') ?? '127.0.0.1',
    usersUrl,
    serviceCallTimeoutMs: integer('SERVICE_CALL_TIMEOUT_MS', 8_000, 100, 120_000),
    ...overrides,
  };
  const pipeline = config.redisUrl !== undefined && config.amqpUrl !== undefined;
  if (pipeline && config.confirmTimeoutMs >= config.storeDeadlineMs) {
    problems.push(`CONFIRM_TIMEOUT_MS (${config.confirmTimeoutMs}) must be below STORE_DEADLINE_MS (${config.storeDeadlineMs}): a purchase waits for its confirm within its deadline`);
  }
  const split = config.service !== 'all' || config.usersUrl !== undefined;
  if (split && config.serviceToken === undefined) {
    problems.push('a service of its own (serve --service) or one reached over HTTP (USERS_URL) needs SERVICE_TOKEN, which every process of the install shares');
  }
  if (split && config.databaseUrl === undefined) {
    problems.push('a service of its own (serve --service) or one reached over HTTP (USERS_URL) needs DATABASE_URL: each process opens its own database on one server, never an embedded server per process');
  }
  if (config.usersUrl !== undefined && (config.serviceCallTimeoutMs <= config.queueWaitMs || config.serviceCallTimeoutMs >= config.storeDeadlineMs)) {
    problems.push(`SERVICE_CALL_TIMEOUT_MS (${config.serviceCallTimeoutMs}) must be above QUEUE_WAIT_MS (${config.queueWaitMs}) and below STORE_DEADLINE_MS (${config.storeDeadlineMs}): a call waits out a queue's line and answers within the buyer's deadline`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
