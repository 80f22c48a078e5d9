--[[
  reserve: takes `quantity` units of one product for a buyer under an order id, atomically: the
  product is loaded, its sale window is open by Redis TIME, the buyer stays within the limit and
  enough units remain; then decrements the stock, counts the units against the buyer and records
  the hold with its expiry. Idempotent by order id: a repeated order id returns the hold already
  recorded (whatever its status now) and takes nothing more.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended (or absent)
  KEYS[2] buyers    hash: buyer id -> units held or paid
  KEYS[3] holds     hash: order id -> JSON hold
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms)

  ARGV[1] order id
  ARGV[2] buyer id
  ARGV[3] quantity (a whole number, at least 1)

  Returns { code, remaining, amount cents, expiry ms, status, buyer id, quantity }:
    1  a new hold (remaining: units left just after it)
    2  the hold already recorded under this order id (remaining: units left now)
  or { code, detail } for a refusal, nothing changed:
   -1  not loaded: the product's keys are missing (rebuild them, answer 503 meanwhile)
   -2  product not found (the terms are marked absent)
   -3  sale not open (detail: opens, ms)
   -4  sale ended
   -5  limit exceeded (detail: the per-buyer limit)
   -6  sold out (detail: units remaining)
]]
local orderId, buyerId, quantity = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not quantity or quantity < 1 or quantity % 1 ~= 0 then
  return redis.error_reply('reserve: quantity must be a whole number of at least 1, got ' .. tostring(ARGV[3]))
end

local existing = redis.call('HGET', KEYS[3], orderId)
if existing then
  local hold = cjson.decode(existing)
  local left = tonumber(redis.call('HGET', KEYS[1], 'remaining')) or 0
  return { 2, left, hold.a, hold.e, hold.s, hold.b, hold.q }
end

local t = redis.call('HMGET', KEYS[1], 'remaining', 'price', 'limit', 'hold', 'opens', 'closes', 'ended', 'absent')
local remaining, price, limit, holdSeconds = tonumber(t[1]), tonumber(t[2]), tonumber(t[3]), tonumber(t[4])
local opens, closes, ended, absent = tonumber(t[5]), tonumber(t[6]), tonumber(t[7]), t[8]
if absent then return { -2, 0 } end
if not remaining then return { -1, 0 } end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if ended or (closes and closes <= now) then return { -4, 0 } end
if opens > now then return { -3, opens } end
if limit and quantity > limit then return { -5, limit } end
if remaining < quantity then return { -6, remaining } end
if limit then
  local units = tonumber(redis.call('HGET', KEYS[2], buyerId)) or 0
  if units + quantity > limit then return { -5, limit } end
end

local left = redis.call('HINCRBY', KEYS[1], 'remaining', -quantity)
redis.call('HINCRBY', KEYS[2], buyerId, quantity)
local amount = price * quantity
local expiresAt = now + holdSeconds * 1000
redis.call('HSET', KEYS[3], orderId, cjson.encode({ b = buyerId, q = quantity, a = amount, e = expiresAt, s = 'held' }))
redis.call('ZADD', KEYS[4], expiresAt, orderId)
return { 1, left, amount, expiresAt, 'held', buyerId, quantity }
