--[[
  rebuild-begin: the first step of a rebuild from PostgreSQL: clears every key of the product
  (whatever part of it is left: a key lost alone leaves the others stale), while the rebuild lock
  is this rebuild's. The buyers' Idempotency-Key bindings are under their own tags: untouched. Until load.lua ends the rebuild, the product is not loaded: every script
  refuses it, and writes nothing.

  KEYS[1..6] the product's keys (terms, buyers, holds, expiries, ended, unchecked)
  KEYS[7]    rebuild: the token of the rebuild under way

  ARGV[1] the rebuild's token

  Returns 1 cleared, or -17 when the lock is not this token's (nothing changed).
]]
if redis.call('GET', KEYS[7]) ~= ARGV[1] then return -17 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
