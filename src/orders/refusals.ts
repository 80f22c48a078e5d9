/** Turns inventory's typed refusals into the buyer-facing refusals (plain data, see `Refusal`). */
import { refusal, type Refusal } from '../infra/errors.js';
import type { ReserveRefusal } from '../inventory/inventory.types.js';

export function purchaseRefusal(refused: ReserveRefusal, productId: string): Refusal {
  switch (refused.reason) {
    case 'SOLD_OUT':
      return refusal('SOLD_OUT', refused.remaining === 0 ? 'sold out' : `only ${refused.remaining} left; nothing was reserved`, {
        productId,
        remaining: refused.remaining,
      });
    case 'PRODUCT_NOT_FOUND':
      return refusal('PRODUCT_NOT_FOUND', undefined, { productId });
    case 'SALE_NOT_OPEN':
      return refusal('SALE_NOT_OPEN', `the sale opens at ${refused.opensAt}`, { productId, opensAt: refused.opensAt });
    case 'SALE_ENDED':
      return refusal('SALE_ENDED', undefined, { productId });
    case 'LIMIT_EXCEEDED':
      return refusal('LIMIT_EXCEEDED', `at most ${refused.limit} per buyer`, { productId, limit: refused.limit });
    case 'CONTENTION':
      return refusal('CONTENTION', undefined, { productId }, refused.retryAfterSeconds);
    case 'KEY_REUSED':
      return refusal('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request');
    case 'ACCOUNT_TOO_NEW':
      return refusal('ACCOUNT_TOO_NEW', 'this sale is open only to accounts created before it was announced', { productId });
    case 'INSUFFICIENT_FUNDS':
      return refusal(
        'INSUFFICIENT_FUNDS',
        `this sale holds units only for buyers who can pay for them: the balance less other held orders (${refused.spendableCents} cents) does not cover ${refused.amountCents} cents; nothing was reserved`,
        { productId, balanceCents: refused.spendableCents, amountCents: refused.amountCents },
      );
    case 'FUNDS_UNKNOWN':
      // The checkout asks again with the buyer's balance; a refusal like this one never reaches a buyer.
      throw new Error('a reservation that asks for the buyer\'s balance reached the buyer');
  }
}
