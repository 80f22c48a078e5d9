/**
 * Which strategies a bench runs on a server, and why it skips the others. `/healthz` lists what
 * the server can run now; for a strategy it does not list, the server's own refusal to create a
 * product with it says why (`400 STRATEGY_UNAVAILABLE`, e.g. "needs REDIS_URL and AMQP_URL"). The
 * refusal comes before anything is written, so asking creates nothing.
 */
import { STRATEGY_NAMES } from '../inventory/strategy-names.js';
import type { AdminApi } from './client.js';

export interface SkippedStrategy {
  readonly strategy: string;
  /** The server's reason, e.g. `needs REDIS_URL and AMQP_URL, which this server was started without`. */
  readonly why: string;
}

export interface StrategyChoice {
  readonly strategies: readonly string[];
  readonly unavailable: readonly SkippedStrategy[];
}

/**
 * The server names a store it was started without ("needs …") for a strategy it could run with
 * it; the other names it refuses are planned, not built, and `all` means what the server has.
 */
const MISSING_SETTING = /\bneeds\b/;

/** `asked`: names, or `'all'`: every strategy the server has, plus those it lacks only a setting for (reported, not run). */
export async function chooseStrategies(admin: AdminApi, asked: 'all' | readonly string[], available: readonly string[]): Promise<StrategyChoice> {
  if (asked === 'all') {
    const missing = STRATEGY_NAMES.filter((name) => !available.includes(name));
    const skipped = await Promise.all(missing.map((name) => whyUnavailable(admin, name)));
    return { strategies: available, unavailable: skipped.filter((skip) => MISSING_SETTING.test(skip.why)) };
  }
  const unavailable = await Promise.all(asked.filter((name) => !available.includes(name)).map((name) => whyUnavailable(admin, name)));
  return { strategies: asked.filter((name) => available.includes(name)), unavailable };
}

async function whyUnavailable(admin: AdminApi, strategy: string): Promise<SkippedStrategy> {
  const refusal = await admin
    .call<{ code?: string; detail?: string }>('POST', '/v1/admin/products', { name: 'bench: why is this strategy unavailable', priceCents: 1, stock: 1, strategy }, [400])
    .catch(() => undefined);
  if (refusal?.code === 'STRATEGY_UNAVAILABLE' && refusal.detail !== undefined) {
    // "strategy "x" needs …" → "needs …": the name is already beside it in the report.
    return { strategy, why: refusal.detail.replace(/^strategy "[^"]*"\s*/, '') };
  }
  if (refusal?.code === 'VALIDATION_FAILED') return { strategy, why: 'not a strategy name this server knows' };
  return { strategy, why: 'not listed by the server (/healthz)' };
}

/** `redis-lua (needs REDIS_URL and AMQP_URL, …)`, for the reports. */
export function describeSkipped(skipped: readonly SkippedStrategy[]): string {
  return skipped.map((skip) => `${skip.strategy} (${skip.why})`).join('; ');
}
