/**
 * Time-ordered ids (UUIDv7, from `uuid`), with their random bytes drawn from a pool.
 *
 * @remarks Why not plain `v7()`: it asks the system for 16 random bytes per id
 * (`crypto.getRandomValues`, ~2.2 µs here), and a drop mints one for every buyer who reaches the
 * line as well as every buyer it sets up; from a pool refilled 256 ids at a time an id costs
 * ~0.3 µs. Given its bytes, `v7` keeps no clock sequence of its own, so the millisecond and the
 * counter within it are kept here, as `v7` does: ids minted by this process keep increasing.
 */
import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

const BYTES_PER_ID = 16;
const POOL_IDS = 256;

export function timeOrderedIds(now: () => number = Date.now): () => string {
  const pool = new Uint8Array(BYTES_PER_ID * POOL_IDS);
  let next = pool.length;
  let msecs = -Infinity;
  let seq = 0;
  return () => {
    if (next === pool.length) {
      randomFillSync(pool);
      next = 0;
    }
    const random = pool.subarray(next, next + BYTES_PER_ID);
    next += BYTES_PER_ID;
    const at = now();
    if (at > msecs) {
      msecs = at;
      // A random start within the millisecond, as v7 draws it (31 bits of the id's random bytes).
      seq = (((random[6] ?? 0) & 0x7f) << 24) | ((random[7] ?? 0) << 16) | ((random[8] ?? 0) << 8) | (random[9] ?? 0);
    } else {
      seq = (seq + 1) | 0;
      if (seq === 0) msecs += 1;
    }
    return v7({ random, msecs, seq });
  };
}
