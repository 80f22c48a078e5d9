--[[
  release: ends a held hold (a cancel, or an expiry) and gives its units back to the stock and to
  the buyer's count. With only-if-expired, only when its expiry has passed by Redis TIME. Idempotent
  by order id: a hold that is no longer held is left as it is.

  The ended hold stays in `holds` (a repeat of its order id is told how it ended) until its time to
  leave, kept in KEYS[5]: the reconciler's horizon from now (by then PostgreSQL's allocation has
  followed the gate's status, or its next sweep finds it gone and follows anyway); for a keyed
  hold, no sooner than the key retention after it was made, since the key's binding, made just
  before the hold, can bring its order id back until then. Like reserve.lua, each call prunes a few
  ended holds whose time has come.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended, pruned_cancelled, pruned_expired
  KEYS[2] buyers    hash: buyer id -> units held or paid
  KEYS[3] holds     hash: order id -> JSON hold
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms)
  KEYS[5] ended     sorted set: order id of each cancelled or expired hold, scored by when it may leave holds (ms)
  KEYS[6] unchecked sorted set: order ids the reconciler has not yet looked up (not changed)

  ARGV[1] order id
  ARGV[2] the status it ends in: 'cancelled' or 'expired'
  ARGV[3] only if expired: '1' or '0'
  ARGV[4] the reconciler's horizon (ms)
  ARGV[5] the key retention (ms)

  Returns { code, buyer id, quantity }:
    1  released (the units are back)
  or { code } when nothing changed (but a few ended holds pruned):
   -1  not loaded: the product's keys are missing
   -7  no hold under this order id (or a keyed refusal an older version kept there)
  -10  not held any more: { -10, status } with its status now (paid, cancelled or expired)
  -11  only-if-expired, and its expiry has not passed yet
]]
local orderId, status, onlyIfExpired = ARGV[1], ARGV[2], ARGV[3] == '1'
local horizon, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
if status ~= 'cancelled' and status ~= 'expired' then
  return redis.error_reply('release: status must be cancelled or expired, got ' .. tostring(status))
end

-- Loaded only with its terms and every other key's marker (`~`): a key lost alone means rebuild.
if redis.call('HEXISTS', KEYS[1], 'remaining') == 0 or redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) < 5 then return { -1 } end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

pruneEnded(now, orderId)

local raw = redis.call('HGET', KEYS[3], orderId)
if not raw then return { -7 } end
local hold = cjson.decode(raw)
-- A keyed refusal an older version kept among the holds is no hold.
if hold.s == 'refused' then return { -7 } end
if hold.s ~= 'held' then return { -10, hold.s } end
if onlyIfExpired and hold.e > now then return { -11 } end

hold.s = status
redis.call('HSET', KEYS[3], orderId, cjson.encode(hold))
redis.call('ZREM', KEYS[4], orderId)
local leaves = now + horizon
if hold.k then leaves = math.max(leaves, (hold.t or now) + retention) end
redis.call('ZADD', KEYS[5], leaves, orderId)
redis.call('HINCRBY', KEYS[1], 'remaining', hold.q)
if redis.call('HINCRBY', KEYS[2], hold.b, -hold.q) <= 0 then redis.call('HDEL', KEYS[2], hold.b) end
return { 1, hold.b, hold.q }
