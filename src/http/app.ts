/**
 * Builds the HTTP app from its dependencies, without listening: tests drive it with `inject`
 * or `listen({ port: 0 })`; only `server.ts` listens for real.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { auditProducts } from '../audit/audit.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import { inventoryRoutes } from '../inventory/inventory.routes.js';
import { STRATEGY_NAMES, type StrategyName } from '../inventory/strategy-names.js';
import type { Tokens } from '../infra/tokens.js';
import type { OrdersClient } from '../orders/orders.client.js';
import { ordersRoutes } from '../orders/orders.routes.js';
import { RevokedSessions } from '../users/revoked-sessions.js';
import type { UsersClient } from '../users/users.client.js';
import { usersRoutes } from '../users/users.routes.js';
import { requireAdmin, requireBuyer } from './auth.js';
import { problemClientErrorHandler } from './client-errors.js';
import { connectionTimeoutOptions, type ConnectionTimeouts } from './connection-timeouts.js';
import { metricsGuard, registerMetrics, type Metrics } from './metrics.js';
import { registerOverloadGuard, type OverloadGuard } from './overload.js';
import { perBuyerInFlight } from './buyer-in-flight.js';
import { perBuyerRateLimit } from './rate-limit.js';
import { signupRateLimit, type SignupRateLimitOptions } from './signup-rate-limit.js';
import { problem, registerProblemHandlers, sendProblem } from './problem.js';
import { ADMIN_PROBLEMS, BODY_PROBLEMS, BUYER_PROBLEMS, registerResponseSchemas, responses } from './response-schemas.js';
import { bearerSecurity, calendarInstants, canonicalIds, ref, uuid, uuidInput } from './schemas.js';

/** The largest body any route but {@link ORDER_CHECK_BODY_LIMIT_BYTES}'s accepts. */
export const BODY_LIMIT_BYTES = 4 * 1024;
/** `POST /v1/admin/orders/missing`: 20,000 ids. */
export const ORDER_CHECK_BODY_LIMIT_BYTES = 1024 * 1024;

export interface AppDeps {
  readonly users: UsersClient;
  readonly inventory: InventoryClient;
  readonly orders: OrdersClient;
  readonly tokens: Tokens;
  /** How often the app asks users for sessions ended since it last asked (`REVOCATION_REFRESH_MS`). */
  readonly revocationRefreshMs: number;
  readonly adminToken: string;
  readonly defaultStrategy: StrategyName;
  readonly availableStrategies: () => StrategyName[];
  /** Resolves with the stores that did not answer (empty: ready). */
  readonly checkStores: () => Promise<string[]>;
  readonly maxInFlight: number;
  readonly connectionTimeouts: ConnectionTimeouts;
  readonly logLevel: string;
  /** Requests per buyer per second to the buyer routes; 0: no limit. */
  readonly rateLimitPerSecond?: number;
  /** Requests of one buyer handled at once; 0: no cap. */
  readonly buyerMaxInFlight?: number;
  /** Sign-ups per client address per minute, and whose word the client address is; no limit when absent. */
  readonly signupRateLimit?: SignupRateLimitOptions;
  /** Held orders expired since start (for `/metrics`). */
  readonly holdsExpired?: () => number;
  /** Waits until what is on its way to PostgreSQL has landed (the order pipeline), so the audit reads settled stores. */
  readonly beforeAudit?: () => Promise<void>;
  /** Adds the order pipeline's gauges to `/metrics` (when there is one). */
  readonly registerPipelineMetrics?: (registry: Registry) => void;
  /** Adds the outbox's figures (order events written, relayed, waiting) to `/metrics`. */
  readonly registerOutboxMetrics?: (registry: Registry) => void;
  /** When set, `/metrics` answers only this bearer token or the admin token (`METRICS_TOKEN`). */
  readonly metricsToken?: string;
  /** How long `/metrics` keeps a figure it read from a store (`METRICS_CACHE_MS`); 0 when absent. */
  readonly metricsCacheMs?: number;
}

export type App = FastifyInstance & { overload: OverloadGuard; metrics: Metrics; revokedSessions: RevokedSessions };

export function buildApp(deps: AppDeps): App {
  const app = Fastify({
    logger: { level: deps.logLevel },
    // One line per request would cost more than the purchase itself under a storm.
    logController: new LogController({ disableRequestLogging: true }),
    // Every body a buyer or a stranger sends is small; a larger limit only buys an attacker a
    // longer parse and a longer validation answer. The one route with larger bodies sets its own.
    bodyLimit: BODY_LIMIT_BYTES,
    return503OnClosing: true,
    clientErrorHandler: problemClientErrorHandler,
    ...connectionTimeoutOptions(deps.connectionTimeouts),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true }, plugins: [canonicalIds, calendarInstants] },
  });
  registerProblemHandlers(app);
  // On every answer, refusals included, before any guard can answer: no browser may read a JSON
  // or problem body as anything else.
  app.addHook('onRequest', (_request, reply, done) => {
    void reply.header('x-content-type-options', 'nosniff');
    done();
  });
  // Declared up front, so every request object has the same shape whether or not a guard sets
  // it: a property added to some requests only gives V8 a second shape to optimize the handling
  // path for (Fastify's advice for decorators).
  app.decorateRequest('buyerId', '');
  app.decorateRequest('sessionId', '');
  // JSON only: a text/plain body is an unsupported media type, not a malformed JSON one.
  app.removeContentTypeParser('text/plain');
  // OpenAPI generated from the route schemas; the UI at /docs, the document at /docs/json.
  void app.register(swagger, {
    openapi: {
      info: { title: 'flashsale', version: '0.1.0', description: 'Flash-sale and ticket-drop API' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    // Shared schemas keep their `$id` as their name in `components.schemas` (not `def-0`, …).
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
  });
  registerResponseSchemas(app);
  void app.register(swaggerUi, { routePrefix: '/docs' });
  const overload = registerOverloadGuard(app, deps.maxInFlight);
  const metrics = registerMetrics(app, {
    products: () => deps.inventory.listProducts(),
    holdsExpired: deps.holdsExpired ?? (() => 0),
    cacheMs: deps.metricsCacheMs ?? 0,
  });
  deps.registerPipelineMetrics?.(metrics.registry);
  deps.registerOutboxMetrics?.(metrics.registry);

  // This process's view of ended sessions, which the buyer guard asks, fed through the users client.
  const revokedSessions = new RevokedSessions(deps.users, {
    intervalMs: deps.revocationRefreshMs,
    warn: (message) => app.log.warn(message),
  });
  // No request is answered before the revocations still worth refusing are known.
  app.addHook('onReady', () => revokedSessions.start());
  app.addHook('preClose', (done) => {
    revokedSessions.stop();
    done();
  });
  // Every buyer route runs the buyer guard, then the per-buyer limits (each counts by the id the
  // guard sets): a buyer's requests cost what the limits allow, whichever route they go to.
  const rateLimit = perBuyerRateLimit(deps.rateLimitPerSecond ?? 0);
  const inFlight = perBuyerInFlight(app, deps.buyerMaxInFlight ?? 0);
  const buyer = [requireBuyer(deps.tokens, revokedSessions), ...(rateLimit ? [rateLimit] : []), ...(inFlight ? [inFlight] : [])];
  const admin = requireAdmin(deps.adminToken, deps.tokens);

  // Registered as plugins so the OpenAPI hook sees every route.
  void app.register((scope, _options, done) => {
    scope.get(
      '/healthz',
      {
        schema: {
          tags: ['operations'],
          summary: 'Liveness, and the default strategy',
          response: responses(
            {
              200: {
                description: 'The server is up',
                type: 'object',
                required: ['status', 'strategy', 'strategies', 'inFlight'],
                properties: {
                  status: { type: 'string', enum: ['ok'] },
                  strategy: { type: 'string', enum: STRATEGY_NAMES, description: 'Used by products created without one' },
                  strategies: { type: 'array', items: { type: 'string', enum: STRATEGY_NAMES }, description: 'The strategies whose stores are configured' },
                  inFlight: { type: 'integer', minimum: 0, description: 'Requests being handled now' },
                },
              },
            },
            [],
          ),
        },
      },
      async () => ({
        status: 'ok',
        strategy: deps.defaultStrategy,
        strategies: deps.availableStrategies(),
        inFlight: overload.inFlight(),
      }),
    );

    scope.get(
      '/metrics',
      {
        ...(deps.metricsToken === undefined ? {} : { onRequest: metricsGuard(deps.metricsToken, deps.adminToken) }),
        schema: {
          tags: ['operations'],
          summary: 'Prometheus metrics (with METRICS_TOKEN set, only for Authorization: Bearer <METRICS_TOKEN> or the admin token)',
          ...(deps.metricsToken === undefined ? {} : { security: bearerSecurity }),
          response: responses(
            { 200: { description: 'The Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
            deps.metricsToken === undefined ? [] : ['UNAUTHORIZED'],
          ),
        },
      },
      async (_request, reply) =>
        reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()),
    );

    scope.get(
      '/readyz',
      {
        schema: {
          tags: ['operations'],
          summary: 'Readiness: every store answers',
          response: responses(
            {
              200: {
                description: 'Every store answers',
                type: 'object',
                required: ['status'],
                properties: { status: { type: 'string', enum: ['ready'] } },
              },
            },
            ['NOT_READY'],
          ),
        },
      },
      async (_request, reply) => {
        const down = await deps.checkStores();
        if (down.length === 0) return { status: 'ready' };
        return sendProblem(reply, problem('NOT_READY', `not reachable: ${down.join(', ')}`, { down }), 1);
      },
    );

    scope.get(
      '/v1/me',
      {
        onRequest: buyer,
        schema: {
          tags: ['users'],
          summary: 'Your balance and orders',
          security: bearerSecurity,
          response: responses(
            {
              200: {
                description: 'You, and your latest 100 orders, newest first',
                allOf: [
                  ref('User'),
                  { type: 'object', required: ['orders'], properties: { orders: { type: 'array', items: ref('Order') } } },
                ],
              },
            },
            [...BUYER_PROBLEMS, 'USER_NOT_FOUND'],
          ),
        },
      },
      async (request) => {
        const [user, orders] = await Promise.all([
          deps.users.getUser(request.buyerId),
          deps.orders.listForBuyer(request.buyerId),
        ]);
        return { ...user, orders };
      },
    );

    scope.get<{ Querystring: { productId: string | string[] } }>(
      '/v1/admin/audit',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: 'Audit products: stocked = held + paid + remaining, no buyer over the limit, no order lost',
          security: bearerSecurity,
          querystring: {
            type: 'object',
            required: ['productId'],
            additionalProperties: false,
            properties: { productId: { anyOf: [uuidInput, { type: 'array', items: uuidInput, minItems: 1, maxItems: 100 }] } },
          },
          response: responses(
            { 200: { description: 'The audit of every product asked for', ...ref('AuditReport') } },
            ['VALIDATION_FAILED', ...ADMIN_PROBLEMS, 'PRODUCT_NOT_FOUND'],
          ),
        },
      },
      async (request) => {
        const ids = ([] as string[]).concat(request.query.productId);
        await deps.beforeAudit?.();
        return auditProducts(
          {
            figures: (id) => deps.inventory.auditFigures(id),
            allocations: (id, page) => deps.inventory.auditAllocations(id, page),
            allocationStates: (id, orderIds) => deps.inventory.auditAllocationStates(id, orderIds),
            orders: (id, page) => deps.orders.auditOrders(id, page),
            missingOrders: (orderIds) => deps.orders.missing(orderIds),
            ledger: (orderIds) => deps.users.ledgerOf(orderIds),
          },
          ids,
        );
      },
    );
    done();
  });

  void app.register((scope, _options, done) => {
    scope.post<{ Body: { ids: string[] } }>(
      '/v1/admin/orders/missing',
      {
        onRequest: admin,
        // The order-id check of a 10,000-buyer bench run; only the admin token gets this far.
        bodyLimit: ORDER_CHECK_BODY_LIMIT_BYTES,
        schema: {
          tags: ['admin'],
          summary: 'Which of these order ids have no order (bench checks every 2xx has its order)',
          security: bearerSecurity,
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['ids'],
            properties: { ids: { type: 'array', items: uuidInput, maxItems: 20_000 } },
          },
          response: responses(
            {
              200: {
                description: 'The ids among those sent that have no order',
                type: 'object',
                required: ['missing'],
                properties: { missing: { type: 'array', items: uuid } },
              },
            },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS],
          ),
        },
      },
      async (request) => {
        return { missing: await deps.orders.missing(request.body.ids) };
      },
    );
    done();
  });

  const signupLimit = deps.signupRateLimit ? signupRateLimit(deps.signupRateLimit) : undefined;
  void app.register(usersRoutes(deps.users, { admin, buyer, revoked: revokedSessions, ...(signupLimit ? { signupLimit } : {}) }));
  void app.register(inventoryRoutes(deps.inventory, admin));
  void app.register(ordersRoutes(deps.orders, { buyer, admin }));

  return Object.assign(app, { overload, metrics, revokedSessions });
}
