--[[
  mark-absent: records for a while that a product does not exist, so a storm of purchases for an
  unknown id is refused by the gate (product not found) without asking PostgreSQL each time. Only
  when none of the product's keys exist; load.lua replaces the mark when the product is created.

  KEYS[1] terms     hash: becomes { absent = 1 }, expiring after ARGV[1] ms
  KEYS[2] buyers    hash: buyer id -> units held or paid
  KEYS[3] holds     hash: order id -> JSON hold
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms)
  KEYS[5] ended     sorted set: order id of each cancelled or expired hold, scored by when it may leave holds (ms)
  KEYS[6] unchecked sorted set: order ids the reconciler has not yet looked up (not changed)

  ARGV[1] how long the mark lasts (ms, at least 1)

  Returns:
    1  marked
    0  not marked: the product's keys exist (nothing changed)
]]
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'absent', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
