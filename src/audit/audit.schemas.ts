/** The audit's response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { enumOf, objectSchema, ref, uuid } from '../http/schemas.js';
import type { AuditReport, ProductAudit, Violation, ViolationKind } from './audit.types.js';

const units = { type: 'integer', minimum: 0 } as const;

const VIOLATION_KINDS = enumOf<ViolationKind>({
  OVERSOLD: true,
  STOCK_MISMATCH: true,
  NEGATIVE_REMAINING: true,
  BUYER_OVER_LIMIT: true,
  ALLOCATION_WITHOUT_ORDER: true,
  ORDER_WITHOUT_ALLOCATION: true,
  PAID_WITHOUT_SALE: true,
  GATE_MISMATCH: true,
  GATE_DRIFT: true,
  PAID_NOT_DEBITED: true,
  DEBITED_NOT_PAID: true,
  REFUND_UNMATCHED: true,
});

export const productAuditSchema = objectSchema<ProductAudit>('ProductAudit', "One product's units by state, from the stores' truth", {
  productId: uuid,
  stocked: units,
  held: units,
  paid: units,
  remaining: { type: 'integer', description: 'Negative only when the audit also reports `NEGATIVE_REMAINING`' },
  expired: units,
  cancelled: units,
  orders: units,
  oversold: { ...units, description: 'Units held or paid beyond the stock (0 when correct)' },
});

export const violationSchema = objectSchema<Violation>('Violation', 'A broken invariant, with the numbers behind it', {
  productId: uuid,
  kind: { type: 'string', enum: VIOLATION_KINDS },
  detail: { type: 'string' },
  facts: { type: 'object', additionalProperties: { type: ['string', 'number'] } },
});

export const auditReportSchema = objectSchema<AuditReport>('AuditReport', '`ok` when no product breaks an invariant', {
  ok: { type: 'boolean' },
  products: { type: 'array', items: ref('ProductAudit') },
  violations: { type: 'array', items: ref('Violation') },
});

export const auditSchemas = [productAuditSchema, violationSchema, auditReportSchema] as const;
