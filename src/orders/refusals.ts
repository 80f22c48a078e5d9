/** Turns inventory's typed refusals into the buyer-facing domain errors. */
import { DomainError } from '../infra/errors.js';
import type { ReserveRefusal } from '../inventory/inventory.types.js';

export function refusalError(refusal: ReserveRefusal, productId: string): DomainError {
  switch (refusal.reason) {
    case 'SOLD_OUT':
      return new DomainError(
        'SOLD_OUT',
        refusal.remaining === 0 ? 'sold out' : `only ${refusal.remaining} left; nothing was reserved`,
        { productId, remaining: refusal.remaining },
      );
    case 'PRODUCT_NOT_FOUND':
      return new DomainError('PRODUCT_NOT_FOUND', undefined, { productId });
    case 'SALE_NOT_OPEN':
      return new DomainError('SALE_NOT_OPEN', `the sale opens at ${refusal.opensAt}`, { productId, opensAt: refusal.opensAt });
    case 'SALE_ENDED':
      return new DomainError('SALE_ENDED', undefined, { productId });
    case 'LIMIT_EXCEEDED':
      return new DomainError('LIMIT_EXCEEDED', `at most ${refusal.limit} per buyer`, { productId, limit: refusal.limit });
    case 'CONTENTION':
      return new DomainError('CONTENTION', undefined, { productId }, refusal.retryAfterSeconds);
  }
}
