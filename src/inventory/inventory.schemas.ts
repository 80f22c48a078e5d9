/** Inventory's response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { dateTime, objectSchema, uuid } from '../http/schemas.js';
import type { Product, ProductStats } from './inventory.types.js';
import { STRATEGY_NAMES } from './strategy-names.js';

const units = { type: 'integer', minimum: 0 } as const;

export const productSchema = objectSchema<Product>('Product', 'A product on sale, with its live `remaining` stock', {
  id: uuid,
  name: { type: 'string' },
  priceCents: { type: 'integer', minimum: 0 },
  stock: { ...units, description: 'Units ever stocked' },
  remaining: { ...units, description: 'Units free to buy now' },
  perBuyerLimit: { type: ['integer', 'null'], minimum: 1, description: '`null`: unlimited' },
  holdSeconds: { type: 'integer', minimum: 1 },
  opensAt: dateTime,
  closesAt: { ...dateTime, type: ['string', 'null'] },
  endedAt: { ...dateTime, type: ['string', 'null'], description: 'When an admin ended the sale; `null` while it runs' },
  strategy: { type: 'string', enum: STRATEGY_NAMES },
  createdAt: dateTime,
});

export const productStatsSchema = objectSchema<ProductStats>(
  'ProductStats',
  'Units by state, counted from the allocations: stocked = held + paid + remaining',
  { stocked: units, held: units, paid: units, remaining: units, expired: units, cancelled: units },
);

export const inventorySchemas = [productSchema, productStatsSchema] as const;
