--[[
  load: writes a product's terms and the marker member `~` of each of its other keys, which make
  it loaded (every script refuses a product whose terms or any marker is missing). Two callers:

  - A first load (ARGV[14] ''), when a product is created or first used: only when none of the
    product's keys exist, so a starting server or a second instance never overwrites live
    counters. A terms hash that only marks the product absent (mark-absent.lua) counts as missing.
    A product partly present (some keys lost, say to eviction) is not loaded here (-1): it is
    cleared and rebuilt from PostgreSQL under the rebuild lock.
  - The last step of a rebuild (ARGV[14] the rebuild lock's token), after rebuild-begin.lua
    cleared the keys and rebuild-holds.lua wrote the holds page by page: only while the lock is
    still this rebuild's.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended, accounts, funds, version
  KEYS[2] buyers    hash: buyer id -> units held or paid; marker `~`
  KEYS[3] holds     hash: order id -> JSON hold; marker `~`
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms); marker `~` (+inf)
  KEYS[5] ended     sorted set: order id of each cancelled or expired hold, scored by when it may leave holds (ms); marker `~` (+inf)
  KEYS[6] unchecked sorted set: order ids the reconciler has not yet looked up; marker `~` (+inf)
  KEYS[7] rebuild   string: the token of the rebuild under way

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
  ARGV[13] the product row's version in PostgreSQL these terms were read at (update.lua's order)
  ARGV[14] the rebuild lock's token ('' : a first load)
  ARGV[15] the key retention (ms). PostgreSQL does not say which holds were keyed, so every hold
           loaded is marked keyed (k = 1): once ended it stays in holds until the key retention
           has passed since it was made (a cancelled or expired one loaded is listed in ended so),
           since a key may bring its order id back until then (release.lua)

  Returns:
    1  loaded
    0  not loaded: the product is loaded already (nothing changed)
   -1  not loaded: the product is partly present; rebuild it (nothing changed)
  -17  not loaded: the rebuild lock is not this token's (nothing changed)
]]
local absent = redis.call('HEXISTS', KEYS[1], 'absent') == 1
local termsThere = not absent and redis.call('HEXISTS', KEYS[1], 'remaining') == 1
local others = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
if termsThere and others == 5 then return 0 end

local token = ARGV[14] or ''
if token == '' then
  if termsThere or (not absent and redis.call('EXISTS', KEYS[1]) == 1) or others > 0 then
    return -1
  end
elseif redis.call('GET', KEYS[7]) ~= token then
  return -17
end

if absent then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'stocked', ARGV[2], 'price', ARGV[3], 'limit', ARGV[4],
  'hold', ARGV[5], 'opens', ARGV[6], 'closes', ARGV[7], 'ended', ARGV[8], 'accounts', ARGV[11], 'funds', ARGV[12],
  'version', ARGV[13] or '0')
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
    if hold.s == 'cancelled' or hold.s == 'expired' then redis.call('ZADD', KEYS[5], (hold.t or 0) + (tonumber(ARGV[15]) or 0), id) end
  end
end
redis.call('HSET', KEYS[2], '~', '0')
redis.call('HSET', KEYS[3], '~', '{}')
redis.call('ZADD', KEYS[4], '+inf', '~')
redis.call('ZADD', KEYS[5], '+inf', '~')
redis.call('ZADD', KEYS[6], '+inf', '~')
return 1
