/**
 * A figure read from a store, kept for a while: however many callers ask, the store is read at
 * most once per period, and at most once at a time. For `/metrics`, whose scrapers (one every few
 * seconds, or many) must not each cost a query.
 */

/**
 * Returns a reader of `read` that answers from the last reading while it is younger than
 * `ttlMs` (0: every call reads, but calls at the same time share one reading). A reading that
 * fails leaves the last one standing (`undefined` before the first): a store that is down does
 * not blank a dashboard, and its failure is what its own metrics and logs report.
 */
export function cachedReading<T>(read: () => Promise<T>, ttlMs: number, now: () => number = Date.now): () => Promise<T | undefined> {
  let last: { readonly value: T; readonly atMs: number } | undefined;
  let reading: Promise<T | undefined> | undefined;
  return () => {
    if (last !== undefined && now() - last.atMs < ttlMs) return Promise.resolve(last.value);
    reading ??= read()
      .then(
        (value) => {
          last = { value, atMs: now() };
          return value;
        },
        () => last?.value,
      )
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };
}
