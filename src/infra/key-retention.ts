/**
 * How long an `Idempotency-Key` keeps its request's first definitive outcome, in one place for
 * every store that keeps keys: PostgreSQL's key rows (`orders/idempotency.ts`, removed by the
 * clean-up job after it) and the Redis gate's key bindings (`inventory/redis/gate.ts`, which
 * expire after it). The two agree, so a key is never bound in one store and free in the other
 * for longer than the moments between their writes.
 */

/** 24 hours. */
export const KEY_RETENTION_SECONDS = 24 * 60 * 60;
