/**
 * The refunds orders owes at `/metrics`: a gauge read from the count `OwedRefunds` keeps as
 * refunds are owed and made (recounted by each sweep, which reads the table anyway), so a scrape
 * costs no query. Above 0 for long: users has been unreachable, or a refund keeps failing
 * (`owed_refunds.last_error` says why).
 */
import { Gauge, type Registry } from 'prom-client';
import type { OwedRefunds } from './owed-refunds.js';

export function registerOwedRefundMetrics(registry: Registry, owed: Pick<OwedRefunds, 'count'>): void {
  new Gauge({
    name: 'flashsale_refunds_owed',
    help: 'Refunds of expired or cancelled orders not made yet (users was unreachable); later sweeps make them',
    registers: [registry],
    collect() {
      this.set(owed.count);
    },
  });
}
