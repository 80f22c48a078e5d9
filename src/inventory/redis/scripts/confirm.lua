--[[
  confirm: turns a held hold into a sale ('paid'), unless it was cancelled or its expiry has passed
  by Redis TIME (a hold past its expiry is expired even before the sweeper releases it). Idempotent
  by order id: confirming a paid hold again answers it again.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended
  KEYS[2] buyers    hash: buyer id -> units held or paid (not changed: a paid unit still counts)
  KEYS[3] holds     hash: order id -> JSON hold
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms)
  KEYS[5] ended     sorted set: ended holds by when they may leave holds (not changed)
  KEYS[6] unchecked sorted set: order ids the reconciler has not yet looked up (not changed)

  ARGV[1] order id

  Returns { code, amount cents, expiry ms, status, buyer id, quantity }:
    1  paid now
    2  paid already
  or { code } when nothing changed:
   -1  not loaded: the product's keys are missing
   -7  no hold under this order id (or a keyed refusal an older version kept there)
   -8  expired (by status, or held past its expiry)
   -9  cancelled
]]
local orderId = ARGV[1]

-- Loaded only with its terms and every other key's marker (`~`): a key lost alone means rebuild.
if redis.call('HEXISTS', KEYS[1], 'remaining') == 0 or redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) < 5 then return { -1 } end
local raw = redis.call('HGET', KEYS[3], orderId)
if not raw then return { -7 } end
local hold = cjson.decode(raw)
-- A keyed refusal an older version kept among the holds is no hold.
if hold.s == 'refused' then return { -7 } end
if hold.s == 'paid' then return { 2, hold.a, hold.e, hold.s, hold.b, hold.q } end
if hold.s == 'cancelled' then return { -9 } end
if hold.s == 'expired' then return { -8 } end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if hold.e <= now then return { -8 } end

hold.s = 'paid'
redis.call('HSET', KEYS[3], orderId, cjson.encode(hold))
redis.call('ZREM', KEYS[4], orderId)
return { 1, hold.a, hold.e, hold.s, hold.b, hold.q }
