/**
 * After a run: wait for the server to settle, then check the stores through the admin API — the
 * audit (oversold units, buyers over the limit, stock that does not add up) and, on the client
 * side, that every 2xx the buyers got has its order in the database.
 */
import type { AuditReport } from '../audit/audit.types.js';
import type { AdminApi } from './client.js';

export interface RunAudit {
  readonly ok: boolean;
  readonly stocked: number;
  readonly held: number;
  readonly paid: number;
  readonly expired: number;
  readonly cancelled: number;
  readonly remaining: number;
  /** Units held or paid beyond the stock. */
  readonly oversold: number;
  /** 2xx answers whose order is not in the database. */
  readonly lost: number;
  readonly lostOrderIds: readonly string[];
  readonly buyersOverLimit: number;
  /** Every violation the server's audit found, by kind. */
  readonly violations: Readonly<Record<string, number>>;
}

const MISSING_BATCH = 20_000;

/** Waits until the server has nothing in flight but our own probe (at most `limitMs`). */
export async function settle(admin: AdminApi, limitMs = 30_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  let quiet = 0;
  while (Date.now() < deadline && quiet < 2) {
    const health = await admin.health().catch(() => undefined);
    quiet = health !== undefined && (health.inFlight ?? 1) <= 1 ? quiet + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export async function auditRun(admin: AdminApi, productId: string, orderIds: readonly string[]): Promise<RunAudit> {
  const report = await admin.call<AuditReport>('GET', `/v1/admin/audit?productId=${encodeURIComponent(productId)}`);
  const lost: string[] = [];
  for (let start = 0; start < orderIds.length; start += MISSING_BATCH) {
    const ids = orderIds.slice(start, start + MISSING_BATCH);
    const answer = await admin.call<{ missing: string[] }>('POST', '/v1/admin/orders/missing', { ids });
    lost.push(...answer.missing);
  }
  const violations: Record<string, number> = {};
  for (const violation of report.violations) violations[violation.kind] = (violations[violation.kind] ?? 0) + 1;
  const product = report.products[0];
  return {
    ok: report.ok && lost.length === 0,
    stocked: product?.stocked ?? 0,
    held: product?.held ?? 0,
    paid: product?.paid ?? 0,
    expired: product?.expired ?? 0,
    cancelled: product?.cancelled ?? 0,
    remaining: product?.remaining ?? 0,
    oversold: product?.oversold ?? 0,
    lost: lost.length,
    lostOrderIds: lost,
    buyersOverLimit: violations['BUYER_OVER_LIMIT'] ?? 0,
    violations,
  };
}
