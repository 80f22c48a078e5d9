/**
 * One module as a service of its own (`flashsale serve --service users`): opens and migrates only
 * its own database, serves its client's methods on the internal port (`serveModule`, behind the
 * install's service token, bound to `INTERNAL_HOST`: 127.0.0.1 unless told otherwise), and its own
 * `/healthz`, `/readyz` and `/metrics` on the public port. The public API stays with the process
 * that has the orders module, which reaches this one through `USERS_URL`.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from './config.js';
import { problem, sendProblem } from './http/problem.js';
import { timeOrderedIds } from './infra/ids.js';
import { keptSecret, TOKEN_SECRET } from './infra/secrets.js';
import { serveModule } from './infra/service-routes.js';
import { Tokens } from './infra/tokens.js';
import { UsersService } from './users/users.service.js';
import { USERS_METHODS } from './users/users.methods.js';
import { migrateAll, openStores } from './system.js';
import { answersWithin } from './infra/database.js';

export interface RunningService {
  /** Health, readiness and metrics. */
  readonly url: string;
  /** The module's internal routes. */
  readonly internalUrl: string;
  readonly users: UsersService;
  close(): Promise<void>;
}

export async function startServiceServer(config: Config): Promise<RunningService> {
  if (config.service !== 'users') throw new Error(`no service "${config.service}" to serve on its own`);
  if (config.serviceToken === undefined) throw new Error('a service of its own needs SERVICE_TOKEN');
  const token = config.serviceToken;
  const log = { info: console.log, warn: console.warn, error: console.error };
  const stores = await openStores(config, log, ['users']);
  const apps: FastifyInstance[] = [];
  try {
    await migrateAll(stores.databases, ['users']);
    const sql = stores.databases.users;
    const tokens = new Tokens((await keptSecret(config.dataDir, TOKEN_SECRET, config.tokenSecret)).value);
    const users = new UsersService({ sql, tokens, tokenTtlSeconds: config.tokenTtlSeconds, newId: timeOrderedIds() });

    // Request lines are not logged: every purchase makes calls here; failures are logged by the routes.
    const internal = Fastify({ logger: { level: config.logLevel }, disableRequestLogging: true, bodyLimit: 1024 * 1024 });
    apps.push(internal);
    serveModule(internal, { service: 'users', implementation: users, methods: USERS_METHODS }, token);

    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'flashsale_' });
    const operations = Fastify({ logger: { level: config.logLevel }, disableRequestLogging: true });
    apps.push(operations);
    operations.get('/healthz', async () => ({ status: 'ok', service: config.service }));
    operations.get('/readyz', async (_request, reply) => {
      if (await answersWithin(sql, config.storeDeadlineMs)) return { status: 'ready' };
      return sendProblem(reply, problem('NOT_READY', 'not reachable: postgres:users', { down: ['postgres:users'] }), 1);
    });
    operations.get('/metrics', async (_request, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));

    const internalUrl = await internal.listen({ port: config.internalPort, host: config.internalHost });
    const url = await operations.listen({ port: config.port, host: config.host });
    return {
      url,
      internalUrl,
      users,
      close: async () => {
        await Promise.all(apps.map((app) => app.close()));
        await stores.close();
      },
    };
  } catch (error) {
    await Promise.all(apps.map((app) => app.close().catch(() => undefined)));
    await stores.close().catch(() => undefined);
    throw error;
  }
}
