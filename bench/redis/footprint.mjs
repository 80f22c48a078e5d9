#!/usr/bin/env node
// What the Redis gate keeps under one key prefix: how many keys, their memory (MEMORY USAGE,
// bytes, as Redis counts them), how many will never expire, and the members of the largest
// hashes and sorted sets. Read-only (SCAN, MEMORY USAGE, TTL, TYPE, HLEN, ZCARD).
//   usage: node bench/redis/footprint.mjs [redis://127.0.0.1:6379] <key prefix>
// Plain SCAN in a script rather than bench code: it reads another server's keys after a run, and
// the gate's own client (ioredis) is all it needs.
import { Redis } from 'ioredis';

const [url = 'redis://127.0.0.1:6379', prefix] = process.argv.slice(2);
if (!prefix) {
  console.error('usage: node bench/redis/footprint.mjs [redis-url] <key prefix>');
  process.exit(2);
}
const redis = new Redis(url);
const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
let keys = 0;
let bytes = 0;
let forever = 0;
const byKind = new Map();
for await (const page of redis.scanStream({ match: pattern, count: 1000 })) {
  for (const key of page) {
    const [usage, ttl, type] = await Promise.all([redis.memory('USAGE', key), redis.pttl(key), redis.type(key)]);
    keys += 1;
    bytes += Number(usage ?? 0);
    if (ttl === -1) forever += 1;
    // The kind of a key is what follows its hash tag (`…}:holds`), or its type.
    const kind = /\}:([a-z-]+)/.exec(key)?.[1] ?? type;
    const size = type === 'hash' ? await redis.hlen(key) : type === 'zset' ? await redis.zcard(key) : 1;
    const entry = byKind.get(kind) ?? { keys: 0, bytes: 0, members: 0 };
    entry.keys += 1;
    entry.bytes += Number(usage ?? 0);
    entry.members += size;
    byKind.set(kind, entry);
  }
}
console.log(`${keys} keys, ${bytes} bytes, ${forever} without expiry, under ${prefix}`);
for (const [kind, entry] of [...byKind].sort((a, b) => b[1].bytes - a[1].bytes)) {
  console.log(`  ${kind}: ${entry.keys} keys, ${entry.members} members, ${entry.bytes} bytes`);
}
redis.disconnect();
