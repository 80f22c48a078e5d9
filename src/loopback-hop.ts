/**
 * `MODULE_HOP=http`: the three modules in one process, but every client call crosses a real HTTP
 * hop on 127.0.0.1 (`ServiceClient` → `serveModule` → the module), as it would between services:
 * the same routes, token check, deadline, JSON both ways and failure taxonomy, without running
 * three processes. The suite's split-mode subset runs so (`TEST_MODULE_HOP=http`).
 */
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { ServiceClient } from './infra/service-client.js';
import type { ServiceMethods } from './infra/service-methods.js';
import { serveModule } from './infra/service-routes.js';
import type { InventoryClient } from './inventory/inventory.client.js';
import { INVENTORY_METHODS } from './inventory/inventory.methods.js';
import type { OrdersClient } from './orders/orders.client.js';
import { ORDERS_METHODS } from './orders/orders.methods.js';
import type { UsersClient } from './users/users.client.js';
import { USERS_METHODS } from './users/users.methods.js';

/** Each module, found when a call comes: the routes are registered before the modules exist. */
export interface LoopbackModules {
  readonly users: () => UsersClient;
  readonly inventory: () => InventoryClient;
  readonly orders: () => OrdersClient;
}

export interface LoopbackHop {
  readonly users: UsersClient;
  readonly inventory: InventoryClient;
  readonly orders: OrdersClient;
  /** The clients, for `/readyz` and to close. */
  readonly services: readonly ServiceClient[];
  close(): Promise<void>;
}

export async function openLoopbackHop(modules: LoopbackModules, timeoutMs: number): Promise<LoopbackHop> {
  const token = randomBytes(32).toString('hex');
  const app = Fastify({ bodyLimit: 16 * 1024 * 1024 });
  serveModule(app, { service: 'users', implementation: modules.users, methods: USERS_METHODS }, token);
  serveModule(app, { service: 'inventory', implementation: modules.inventory, methods: INVENTORY_METHODS }, token);
  serveModule(app, { service: 'orders', implementation: modules.orders, methods: ORDERS_METHODS }, token);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const services: ServiceClient[] = [];
  const client = <T extends object>(service: string, methods: ServiceMethods<T>): T => {
    const caller = new ServiceClient(service, { url, token, timeoutMs });
    services.push(caller);
    return caller.client(methods);
  };
  return {
    users: client('users', USERS_METHODS),
    inventory: client('inventory', INVENTORY_METHODS),
    orders: client('orders', ORDERS_METHODS),
    services,
    close: async () => {
      await Promise.all(services.map((service) => service.close()));
      await app.close();
    },
  };
}
