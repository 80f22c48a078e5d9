--[[
  load: writes a product's terms (and, for a rebuild, its buyers' unit counts and its holds) only
  when none of the product's keys exist, so a starting server or a second instance never
  overwrites live counters. A terms hash that only marks the product absent (mark-absent.lua)
  counts as missing.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended, accounts, funds
  KEYS[2] buyers    hash: buyer id -> units held or paid
  KEYS[3] holds     hash: order id -> JSON hold
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms)
  KEYS[5] ended     sorted set: order id of each cancelled or expired hold, scored by when it may leave holds (ms)
  KEYS[6] unchecked sorted set: order ids the reconciler has not yet looked up (not changed)

  ARGV[1] remaining (units free to buy)
  ARGV[2] stocked (units ever stocked)
  ARGV[3] price (cents per unit)
  ARGV[4] per-buyer limit ('' : none)
  ARGV[5] hold seconds
  ARGV[6] opens (ms)
  ARGV[7] closes (ms; '' : never)
  ARGV[8] ended (ms; '' : not ended)
  ARGV[9] JSON object: buyer id -> units held or paid ('' : none)
  ARGV[10] JSON array of holds, each { id, b, q, a, e, s, t } ('' : none)
  ARGV[11] accounts: only accounts created before this (ms) may buy ('' : any)
  ARGV[12] funds: '1' when a hold must be covered by the buyer's spendable balance ('' : not)
  ARGV[13] the key retention (ms). PostgreSQL does not say which holds were keyed, so every hold
           loaded is marked keyed (k = 1): once ended it stays in holds until the key retention
           has passed since it was made (a cancelled or expired one loaded is listed in ended so),
           since a key may bring its order id back until then (release.lua)

  Returns:
    1  loaded
    0  not loaded: the product's keys are live (nothing changed)
]]
local absent = redis.call('HEXISTS', KEYS[1], 'absent') == 1
local live = (redis.call('EXISTS', KEYS[1]) == 1 and not absent)
  or redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) > 0
if live then return 0 end

if absent then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'stocked', ARGV[2], 'price', ARGV[3], 'limit', ARGV[4],
  'hold', ARGV[5], 'opens', ARGV[6], 'closes', ARGV[7], 'ended', ARGV[8], 'accounts', ARGV[11], 'funds', ARGV[12])
if ARGV[9] and ARGV[9] ~= '' then
  for buyer, units in pairs(cjson.decode(ARGV[9])) do
    redis.call('HSET', KEYS[2], buyer, units)
  end
end
if ARGV[10] and ARGV[10] ~= '' then
  for _, hold in ipairs(cjson.decode(ARGV[10])) do
    local id = hold.id
    hold.id = nil
    hold.k = 1
    redis.call('HSET', KEYS[3], id, cjson.encode(hold))
    if hold.s == 'held' then redis.call('ZADD', KEYS[4], hold.e, id) end
    if hold.s == 'cancelled' or hold.s == 'expired' then redis.call('ZADD', KEYS[5], (hold.t or 0) + tonumber(ARGV[13]), id) end
  end
end
return 1
