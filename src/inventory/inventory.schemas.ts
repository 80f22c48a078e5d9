/** Inventory's response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { dateTime, enumOf, objectSchema, ref, uuid } from '../http/schemas.js';
import type { Product, ProductStats, StockEvent, StockEventKind, StockEventsPage } from './inventory.types.js';
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
  accountsCreatedBefore: { ...dateTime, type: ['string', 'null'], description: 'Only accounts created before this moment may buy (`ACCOUNT_TOO_NEW`); `null`: any account' },
  requiresFunds: { type: 'boolean', description: 'A buyer whose balance, less their other held orders, does not cover the hold is refused at reserve (`INSUFFICIENT_FUNDS`)' },
  createdAt: dateTime,
});

export const productStatsSchema = objectSchema<ProductStats>(
  'ProductStats',
  'Units by state, counted from the allocations: stocked = held + paid + remaining',
  { stocked: units, held: units, paid: units, remaining: units, expired: units, cancelled: units },
);

export const STOCK_EVENT_KINDS = enumOf<StockEventKind>({ stocked: true, reserved: true, released: true, expired: true, purchased: true });

export const stockEventSchema = objectSchema<StockEvent>('StockEvent', "One event of an event-sourced product's stock stream", {
  seq: { type: 'integer', minimum: 1, description: "Its number in the product's stream: 1, 2, 3, … with no gap" },
  kind: { type: 'string', enum: STOCK_EVENT_KINDS },
  units: { type: 'integer', description: '`stocked`: units added to the stock (negative: removed); the others: the allocation\'s quantity' },
  allocationId: { ...uuid, type: ['string', 'null'], description: 'The allocation (the order id) it concerns; `null` for `stocked`' },
  buyerId: { ...uuid, type: ['string', 'null'], description: '`null` for `stocked`' },
  at: dateTime,
});

export const stockEventsPageSchema = objectSchema<StockEventsPage>('StockEventsPage', "A page of a product's stock events, oldest first", {
  events: { type: 'array', items: ref('StockEvent') },
  nextAfter: { type: ['integer', 'null'], minimum: 1, description: "The next page's `after`; `null` on the last page" },
});

export const inventorySchemas = [productSchema, productStatsSchema, stockEventSchema, stockEventsPageSchema] as const;
