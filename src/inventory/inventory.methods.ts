/**
 * How each `InventoryClient` method crosses to an inventory service in another process (see
 * `src/infra/service-methods.ts`): the reads, and the writes with the hold each may change.
 */
import type { ServiceMethods } from '../infra/service-methods.js';
import type { InventoryClient } from './inventory.client.js';

/** The allocation id a call names first: itself, or in the request it takes. */
const allocationOf = (args: readonly unknown[]): string | undefined => {
  const first = args[0] as string | { readonly allocationId?: string; readonly id?: string } | undefined;
  return typeof first === 'string' ? first : first?.allocationId ?? first?.id;
};

export const INVENTORY_METHODS: ServiceMethods<InventoryClient> = {
  createProduct: { kind: 'write' },
  getProduct: { kind: 'read' },
  listProducts: { kind: 'read' },
  updateProduct: { kind: 'write' },
  endSale: { kind: 'write' },
  stats: { kind: 'read' },
  events: { kind: 'read' },
  reserve: { kind: 'write', orderId: allocationOf },
  release: { kind: 'write', orderId: allocationOf },
  expire: { kind: 'write', orderId: allocationOf },
  confirm: { kind: 'write', orderId: allocationOf },
  allocation: { kind: 'read' },
  outsideHold: { kind: 'read' },
  auditFigures: { kind: 'read' },
  auditAllocations: { kind: 'read' },
  auditAllocationStates: { kind: 'read' },
  recordHolds: { kind: 'write' },
  withdraw: { kind: 'write', orderId: allocationOf },
  abandonHolds: { kind: 'write' },
};
