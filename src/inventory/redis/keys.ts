/**
 * Every Redis key name the redis-lua gate uses, built here and nowhere else.
 *
 * All keys of one product share the hash tag `{p:<productId>}`, so Redis Cluster puts them on one
 * shard and a script may touch them all in one atomic call. A buyer's `Idempotency-Key` bindings
 * are under the buyer's own tag `{b:<buyerId>}`: a key binds across every product, so it cannot
 * live with any one product's keys (the gate calls the two slots one after the other; see
 * `RedisGate.reserve`). A prefix in front of the tag separates installs and test files sharing one
 * Redis (it never contains `{` or `}`, so it cannot move the tag).
 *
 * | key                         | type       | holds                                                          |
 * |-----------------------------|------------|----------------------------------------------------------------|
 * | `<prefix>{p:<id>}:terms`    | hash       | `remaining`, `stocked`, `price`, `limit` (`''`: none), `hold` (s), `opens`, `closes`, `ended`, `accounts` (ms; `''`: none), `funds` (`1` or `''`), `version` (the product row's, of the last change applied), `pruned_cancelled`, `pruned_expired` (units of ended holds pruned from `holds`); or only `absent` |
 * | `<prefix>{p:<id>}:buyers`   | hash       | buyer id → units held or paid                                   |
 * | `<prefix>{p:<id>}:holds`    | hash       | order id → JSON `{b: buyer, q: quantity, a: amount cents, e: expiry ms, s: status, t: made ms, k: 1 if keyed}` |
 * | `<prefix>{p:<id>}:expiries` | sorted set | order id of each hold still `held`, scored by its expiry (ms)   |
 * | `<prefix>{p:<id>}:ended`    | sorted set | order id of each cancelled or expired hold, scored by when it may leave `holds` (ms) |
 * | `<prefix>{p:<id>}:unchecked` | sorted set | order id of each hold granted here that the reconciler has not yet looked up in PostgreSQL, scored by when it was made (ms) |
 * | `<prefix>{p:<id>}:rebuild`  | string     | the token of the process rebuilding the product's keys (a lock, with a TTL) |
 * | `<prefix>{p:<id>}:lock`     | string     | the `redis-lock` strategy's stock lock: its holder's token, with a TTL |
 * | `<prefix>{b:<id>}:key:<sha256 of the key>` | string | JSON `{o: order id}`, or `{o, c: code, d: detail}` with the kept refusal; expires with the key retention |
 * | `<prefix>bindings-since`   | string     | since when (ms) Redis has held every key binding: set when the gate finds it missing (a Redis restarted empty), no expiry |
 *
 * While the product is loaded, `buyers`, `holds`, `expiries`, `ended` and `unchecked` each hold
 * the marker member `~` (load.lua), not an order or a buyer: every script and count skips it, and a
 * key lost alone is seen as such and the product rebuilt, where an empty key and a lost one would
 * look the same.
 */

import { hash } from 'node:crypto';
import { canonicalId } from '../../infra/canonical-id.js';

/** The default prefix of every key of an install. */
export const DEFAULT_KEY_PREFIX = 'fs:';

/** The keys of one product, in the order the scripts take them as `KEYS[1..6]`. */
export interface ProductKeys {
  readonly terms: string;
  readonly buyers: string;
  readonly holds: string;
  readonly expiries: string;
  readonly ended: string;
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
      ended: `${tag}:ended`,
      unchecked: `${tag}:unchecked`,
    };
  }

  /** The product's keys as `KEYS[1..6]` of every product script: terms, buyers, holds, expiries, ended, unchecked. */
  productKeyList(productId: string): readonly [string, string, string, string, string, string] {
    const k = this.product(productId);
    return [k.terms, k.buyers, k.holds, k.expiries, k.ended, k.unchecked];
  }

  /**
   * Where the buyer's `Idempotency-Key` is bound to its request, on every product. The key is
   * hashed: 64 characters in the name whatever the client sent (up to 200), none of them its own.
   */
  keyBinding(buyerId: string, idempotencyKey: string): string {
    return `${this.prefix}{b:${canonicalId(buyerId, 'buyerId')}}:key:${hash('sha256', idempotencyKey, 'hex')}`;
  }

  /**
   * Since when (ms, by Redis `TIME`) this Redis has held every binding it was given: written when
   * the gate first finds it missing, so a Redis that restarted empty (or was flushed) says so.
   */
  bindingsSince(): string {
    return `${this.prefix}bindings-since`;
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
