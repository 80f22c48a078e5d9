/** Inventory's HTTP routes: the product catalogue (buyers) and product administration. */
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { ADMIN_PROBLEMS, BODY_PROBLEMS, responses } from '../http/response-schemas.js';
import { bearerSecurity, idParams, instant, ref, text } from '../http/schemas.js';
import type { InventoryClient } from './inventory.client.js';
import type { NewProduct, ProductChange } from './inventory.types.js';
import { STRATEGY_NAMES } from './strategy-names.js';

const MAX_STOCK = 10_000_000;
/** Largest page of a product's stock events. */
const MAX_EVENTS_PAGE = 1000;

/** Query strings arrive as strings (no type coercion): numbers are checked by pattern, then parsed. */
const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    after: { type: 'string', pattern: '^(0|[1-9][0-9]{0,14})$', description: 'Events numbered above this (default 0: from the first)' },
    limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$', description: `At most this many (1–${MAX_EVENTS_PAGE}, default 100)` },
  },
} as const;

const productFields = {
  name: text(1, 200),
  priceCents: { type: 'integer', minimum: 0, maximum: 100_000_000_000 },
  perBuyerLimit: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
  holdSeconds: { type: 'integer', minimum: 1, maximum: 86_400 },
  opensAt: instant,
  closesAt: { anyOf: [instant, { type: 'null' }] },
  accountsCreatedBefore: {
    anyOf: [instant, { type: 'null' }],
    description: 'Only accounts created before this moment may buy (`403 ACCOUNT_TOO_NEW`); `null` or absent: any account',
  },
  requiresFunds: {
    type: 'boolean',
    description: 'Refuse at reserve a buyer whose balance, less their other held orders, does not cover the hold (`402 INSUFFICIENT_FUNDS`)',
  },
} as const;

const newProductBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'priceCents', 'stock'],
  properties: {
    ...productFields,
    stock: { type: 'integer', minimum: 0, maximum: MAX_STOCK },
    strategy: { type: 'string', enum: [...STRATEGY_NAMES] },
  },
} as const;

const productChangeBody = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    ...productFields,
    addStock: { type: 'integer', minimum: -MAX_STOCK, maximum: MAX_STOCK },
  },
} as const;

/** The schema's pattern admits "2026-13-45T…"; the calendar check happens here. */
function assertInstants(body: { opensAt?: string; closesAt?: string | null; accountsCreatedBefore?: string | null }): void {
  for (const field of ['opensAt', 'closesAt', 'accountsCreatedBefore'] as const) {
    const value = body[field];
    if (typeof value === 'string' && Number.isNaN(Date.parse(value))) {
      throw new DomainError('VALIDATION_FAILED', `${field} is not a real date`, {
        errors: [{ field: `body.${field}`, message: 'is not a real date' }],
      });
    }
  }
}

export function inventoryRoutes(inventory: InventoryClient, admin: onRequestHookHandler) {
  return (app: FastifyInstance): void => {
    app.get(
      '/v1/products',
      {
        schema: {
          tags: ['products'],
          summary: 'List products with live remaining stock',
          response: responses(
            {
              200: {
                description: 'The latest 500 products, newest first',
                type: 'object',
                required: ['products'],
                properties: { products: { type: 'array', items: ref('Product') } },
              },
            },
            [],
          ),
        },
      },
      async () => ({
        products: await inventory.listProducts(),
      }),
    );

    app.get<{ Params: { id: string } }>(
      '/v1/products/:id',
      {
        schema: {
          tags: ['products'],
          summary: 'One product with live remaining stock',
          params: idParams,
          response: responses({ 200: { description: 'The product', ...ref('Product') } }, ['VALIDATION_FAILED', 'PRODUCT_NOT_FOUND']),
        },
      },
      async (request) => inventory.getProduct(request.params.id),
    );

    app.post<{ Body: NewProduct }>(
      '/v1/admin/products',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: 'Create a product',
          body: newProductBody,
          security: bearerSecurity,
          response: responses(
            { 201: { description: 'The product, open from `opensAt` (now, without one)', ...ref('Product') } },
            [...BODY_PROBLEMS, 'STRATEGY_UNAVAILABLE', ...ADMIN_PROBLEMS],
          ),
        },
      },
      async (request, reply) => {
        assertInstants(request.body);
        const product = await inventory.createProduct(request.body);
        return reply.status(201).send(product);
      },
    );

    app.patch<{ Params: { id: string }; Body: ProductChange }>(
      '/v1/admin/products/:id',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: 'Add stock, edit the window or limits (never below what is allocated)',
          params: idParams,
          body: productChangeBody,
          security: bearerSecurity,
          response: responses(
            { 200: { description: 'The product as changed', ...ref('Product') } },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS, 'PRODUCT_NOT_FOUND', 'INVALID_STOCK_CHANGE'],
          ),
        },
      },
      async (request) => {
        assertInstants(request.body);
        return inventory.updateProduct(request.params.id, request.body);
      },
    );

    app.post<{ Params: { id: string } }>(
      '/v1/admin/products/:id/end',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: 'End the sale now',
          params: idParams,
          security: bearerSecurity,
          response: responses(
            { 200: { description: 'The product, with `endedAt`', ...ref('Product') } },
            [...BODY_PROBLEMS, ...ADMIN_PROBLEMS, 'PRODUCT_NOT_FOUND'],
          ),
        },
      },
      async (request) => inventory.endSale(request.params.id),
    );

    app.get<{ Params: { id: string } }>(
      '/v1/admin/products/:id/stats',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: 'Units by state',
          params: idParams,
          security: bearerSecurity,
          response: responses(
            { 200: { description: "The product's units by state", ...ref('ProductStats') } },
            ['VALIDATION_FAILED', ...ADMIN_PROBLEMS, 'PRODUCT_NOT_FOUND'],
          ),
        },
      },
      async (request) => inventory.stats(request.params.id),
    );

    app.get<{ Params: { id: string }; Querystring: { after?: string; limit?: string } }>(
      '/v1/admin/products/:id/events',
      {
        onRequest: admin,
        schema: {
          tags: ['admin'],
          summary: `The product's stock events, oldest first (after; limit 1–${MAX_EVENTS_PAGE}, default 100); none unless it is event-sourced`,
          params: idParams,
          querystring: eventsQuery,
          security: bearerSecurity,
          response: responses(
            { 200: { description: 'One page of the events', ...ref('StockEventsPage') } },
            ['VALIDATION_FAILED', ...ADMIN_PROBLEMS, 'PRODUCT_NOT_FOUND'],
          ),
        },
      },
      async (request) => {
        const limit = Number(request.query.limit ?? '100');
        if (limit > MAX_EVENTS_PAGE) {
          throw new DomainError('VALIDATION_FAILED', `limit must be at most ${MAX_EVENTS_PAGE}`, {
            errors: [{ field: 'querystring.limit', message: `must be at most ${MAX_EVENTS_PAGE}` }],
          });
        }
        return inventory.events(request.params.id, { after: Number(request.query.after ?? '0'), limit });
      },
    );
  };
}
