--[[
  reserve: takes `quantity` units of one product for a buyer under an order id, atomically: the
  product is loaded, its sale window is open by Redis TIME, the buyer stays within the limit and
  enough units remain; then decrements the stock, counts the units against the buyer and records
  the hold with its expiry. Idempotent by order id: a repeated order id returns the hold already
  recorded (whatever its status now) and takes nothing more. A refusal changes nothing (but the
  pruning below).

  An Idempotency-Key is bound to its request before this script runs, under the buyer's own hash
  tag (claim-key.lua; a keyed refusal is kept there, keep-refusal.lua): this script only marks a
  keyed hold (k = 1), which stays in `holds` after it ends for as long as its key can ask for it
  again (release.lua).

  Each call that reads Redis TIME also prunes a few ended holds whose time to leave `holds` has
  come (KEYS[5]): their units move to the terms' pruned counters, so counts stay whole.

  The product's two optional rules: `accounts` (ms) admits only accounts created before it (an
  account's age is its id's: users are UUIDv7, whose first 48 bits are Unix milliseconds); `funds`
  ('1') refuses a buyer whose spendable balance (ARGV[5]) does not cover the hold, and asks for it
  (-16, nothing done) when it was not given. Neither funds refusal is kept on the key's binding: a
  buyer who tops up may retry with the same key.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended, accounts, funds (or absent)
  KEYS[2] buyers    hash: buyer id -> units held or paid
  KEYS[3] holds     hash: order id -> JSON hold
  KEYS[4] expiries  sorted set: order id of each held hold, scored by expiry (ms)
  KEYS[5] ended     sorted set: order id of each cancelled or expired hold, scored by when it may leave holds (ms)
  KEYS[6] unchecked sorted set: order id of each new hold, scored by when it was made (ms), until
                    the reconciler has looked it up in PostgreSQL

  ARGV[1] order id
  ARGV[2] buyer id
  ARGV[3] quantity (a whole number, at least 1)
  ARGV[4] '1' when the request has an Idempotency-Key ('' : none)
  ARGV[5] the buyer's balance less their other held orders, in cents ('' : not known)

  Returns { code, remaining, amount cents, expiry ms, status, buyer id, quantity }:
    1  a new hold (remaining: units left just after it)
    2  the hold already recorded under this order id (remaining: units left now)
  or { code, detail } of a keyed refusal an older version kept under this order id, as it was;
  or { code, detail } for a refusal, nothing changed (but a few ended holds pruned):
   -1  not loaded: the product's keys are missing (rebuild them, answer 503 meanwhile)
   -2  product not found (the terms are marked absent)
   -3  sale not open (detail: opens, ms)
   -4  sale ended
   -5  limit exceeded (detail: the per-buyer limit)
   -6  sold out (detail: units remaining)
  -14  the buyer's account is not older than the product admits
  -15  insufficient funds (detail: the hold's amount, cents)
  -16  the product requires funds and ARGV[5] is '' (detail: the hold's amount, cents)
]]
local orderId, buyerId, quantity, keyed, spendable = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5])
if not quantity or quantity < 1 or quantity % 1 ~= 0 then
  return redis.error_reply('reserve: quantity must be a whole number of at least 1, got ' .. tostring(ARGV[3]))
end

local t = redis.call('HMGET', KEYS[1], 'remaining', 'price', 'limit', 'hold', 'opens', 'closes', 'ended', 'absent',
  'accounts', 'funds')
local remaining, price, limit, holdSeconds = tonumber(t[1]), tonumber(t[2]), tonumber(t[3]), tonumber(t[4])
local opens, closes, ended, absent = tonumber(t[5]), tonumber(t[6]), tonumber(t[7]), t[8]
local accountsBefore, requiresFunds = tonumber(t[9]), t[10] == '1'
if absent then return { -2, 0 } end
-- Nothing is written to a product that is not loaded: a key written here would make load.lua
-- take the product for live and never rebuild it.
if not remaining then return { -1, 0 } end
-- Nor to one that lost any other key (each holds a marker member `~` while loaded): its buyers'
-- counts or its holds would be missing, and the limit or an order id's hold misjudged.
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) < 5 then return { -1, 0 } end

local existing = redis.call('HGET', KEYS[3], orderId)
if existing then
  local hold = cjson.decode(existing)
  -- A keyed refusal an older version kept among the holds ({ s = 'refused', c, d }): answered as it was.
  if hold.s == 'refused' then return { hold.c, hold.d } end
  return { 2, remaining, hold.a, hold.e, hold.s, hold.b, hold.q }
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

pruneEnded(now, nil)

-- The account's creation (ms) from its UUIDv7 id; nil for an id of another version.
local function accountCreated(id)
  if string.sub(id, 15, 15) ~= '7' then return nil end
  return tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16)
end

local amount = price * quantity
local code, detail = 0, 0
if ended or (closes and closes <= now) then code = -4
elseif opens > now then code, detail = -3, opens
elseif accountsBefore and (accountCreated(buyerId) or accountsBefore) >= accountsBefore then code = -14
elseif limit and quantity > limit then code, detail = -5, limit
elseif remaining < quantity then code, detail = -6, remaining
elseif requiresFunds and not spendable then code, detail = -16, amount
elseif requiresFunds and spendable < amount then code, detail = -15, amount
elseif limit and (tonumber(redis.call('HGET', KEYS[2], buyerId)) or 0) + quantity > limit then code, detail = -5, limit
end

if code < 0 then return { code, detail } end

local left = redis.call('HINCRBY', KEYS[1], 'remaining', -quantity)
redis.call('HINCRBY', KEYS[2], buyerId, quantity)
local expiresAt = now + holdSeconds * 1000
local hold = { b = buyerId, q = quantity, a = amount, e = expiresAt, s = 'held', t = now }
if keyed then hold.k = 1 end
redis.call('HSET', KEYS[3], orderId, cjson.encode(hold))
redis.call('ZADD', KEYS[4], expiresAt, orderId)
redis.call('ZADD', KEYS[6], now, orderId)
return { 1, left, amount, expiresAt, 'held', buyerId, quantity }
