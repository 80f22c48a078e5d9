/**
 * How each `UsersClient` method crosses to a users service in another process (see
 * `src/infra/service-methods.ts`): the reads, and the writes with the order each may change.
 */
import type { ServiceMethods } from '../infra/service-methods.js';
import type { LedgerMovement, UsersClient } from './users.client.js';

const orderOfMovement = (args: readonly unknown[]): string | undefined => (args[0] as Partial<LedgerMovement> | undefined)?.orderId;

export const USERS_METHODS: ServiceMethods<UsersClient> = {
  signUp: { kind: 'write' },
  createMany: { kind: 'write' },
  refresh: { kind: 'write' },
  signOut: { kind: 'write' },
  revokeUser: { kind: 'write' },
  revokedSessions: { kind: 'read' },
  getUser: { kind: 'read' },
  debit: { kind: 'write', orderId: orderOfMovement },
  refund: { kind: 'write', orderId: orderOfMovement },
  debitsNotRefunded: { kind: 'read' },
  ledgerOf: { kind: 'read' },
  credit: { kind: 'write' },
};
