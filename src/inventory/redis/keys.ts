/**
 * Every Redis key name the redis-lua gate uses, built here and nowhere else.
 *
 * All keys of one product share the hash tag `{p:<productId>}`, so Redis Cluster puts them on one
 * shard and a script may touch them all in one atomic call. A prefix in front of the tag separates
 * installs and test files sharing one Redis (it never contains `{` or `}`, so it cannot move the tag).
 *
 * | key                         | type       | holds                                                          |
 * |-----------------------------|------------|----------------------------------------------------------------|
 * | `<prefix>{p:<id>}:terms`    | hash       | `remaining`, `stocked`, `price`, `limit` (`''`: none), `hold` (s), `opens`, `closes`, `ended`, `accounts` (ms; `''`: none), `funds` (`1` or `''`), `version` (the product row's, of the last change applied); or only `absent` |
 * | `<prefix>{p:<id>}:buyers`   | hash       | buyer id → units held or paid                                   |
 * | `<prefix>{p:<id>}:holds`    | hash       | order id → JSON `{b: buyer, q: quantity, a: amount cents, e: expiry ms, s: status}` |
 * | `<prefix>{p:<id>}:expiries` | sorted set | order id of each hold still `held`, scored by its expiry (ms)   |
 * | `<prefix>{p:<id>}:keys`     | hash       | buyer id `\n` Idempotency-Key → the order id it is bound to   |
 * | `<prefix>{p:<id>}:unchecked` | sorted set | order id of each hold granted here that the reconciler has not yet looked up in PostgreSQL, scored by when it was made (ms) |
 * | `<prefix>{p:<id>}:rebuild`  | string     | the token of the process rebuilding the product's keys (a lock, with a TTL) |
 * | `<prefix>{p:<id>}:lock`     | string     | the `redis-lock` strategy's stock lock: its holder's token, with a TTL |
 *
 * A hold's JSON also has `t`, when it was made (ms); a keyed refusal is kept in `holds` as
 * `{s: 'refused', c: code, d: detail}`. While the product is loaded, `buyers`, `holds`, `expiries`
 * and `unchecked` each hold the marker member `~` (load.lua), so a key lost alone is seen as such
 * and the product rebuilt, where an empty key and a lost one would look the same.
 */

import { canonicalId } from '../../infra/canonical-id.js';

/** The default prefix of every key of an install. */
export const DEFAULT_KEY_PREFIX = 'fs:';

/** The keys of one product, in the order the scripts take them as `KEYS[1..6]`. */
export interface ProductKeys {
  readonly terms: string;
  readonly buyers: string;
  readonly holds: string;
  readonly expiries: string;
  readonly keys: string;
  readonly unchecked: string;
}

/** Builds key names under one prefix. */
export class GateKeys {
  constructor(readonly prefix: string = DEFAULT_KEY_PREFIX) {
    if (/[{}]/.test(prefix)) throw new Error(`a Redis key prefix must not contain { or }, got "${prefix}"`);
  }

  /**
   * The hash tag every key of the product starts with (after the prefix). Only a canonical id
   * makes one: a second spelling of the id would name a second set of keys, a second stock
   * counter for the same product.
   */
  productTag(productId: string): string {
    return `${this.prefix}{p:${canonicalId(productId, 'productId')}}`;
  }

  product(productId: string): ProductKeys {
    const tag = this.productTag(productId);
    return {
      terms: `${tag}:terms`,
      buyers: `${tag}:buyers`,
      holds: `${tag}:holds`,
      expiries: `${tag}:expiries`,
      keys: `${tag}:keys`,
      unchecked: `${tag}:unchecked`,
    };
  }

  /** The product's keys as `KEYS[1..6]` of every script: terms, buyers, holds, expiries, keys, unchecked. */
  productKeyList(productId: string): readonly [string, string, string, string, string, string] {
    const k = this.product(productId);
    return [k.terms, k.buyers, k.holds, k.expiries, k.keys, k.unchecked];
  }

  /** The `redis-lock` strategy's lock of the product's stock. */
  stockLock(productId: string): string {
    return `${this.productTag(productId)}:lock`;
  }

  /** The lock a rebuild of the product's keys is made under (same hash tag: same shard). */
  rebuildLock(productId: string): string {
    return `${this.productTag(productId)}:rebuild`;
  }

  /** A pattern matching every key under the prefix (tests delete their keys with it). */
  everything(): string {
    return `${this.prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  }
}
