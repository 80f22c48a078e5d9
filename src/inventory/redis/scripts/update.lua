--[[
  update: applies an admin's change to a loaded product: the units ever stocked (added to, or
  unallocated units taken away), and any of its terms (price, limit, hold, window, end). Every
  value is absolute (the stocked total, not units to add), so applying a change twice is applying
  it once: a change the gate missed is caught up by applying PostgreSQL's values again. A change
  that would take away more units than remain unallocated changes nothing.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended, accounts, funds
  KEYS[2] buyers    hash: buyer id -> units held or paid (not changed)
  KEYS[3] holds     hash: order id -> JSON hold (not changed)
  KEYS[4] expiries  sorted set: held holds by expiry (not changed)
  KEYS[5] ended     sorted set: ended holds by when they may leave holds (not changed)
  KEYS[6] unchecked sorted set: order ids the reconciler has not yet looked up (not changed)

  ARGV[1] units stocked in all ('' : unchanged); remaining moves by the difference
  ARGV[2..] pairs: field, value, for fields price, limit, hold, opens, closes, ended, accounts, funds
            ('' clears limit, closes, ended or accounts, and turns funds off)

  Returns { code, remaining, stocked }:
    1  applied
  or { code, detail } when nothing changed:
   -1  not loaded: the product's keys are missing
  -12  invalid stock change: fewer units remain than would be taken away (detail: units remaining)
]]
local settable = { price = true, limit = true, hold = true, opens = true, closes = true, ended = true, accounts = true, funds = true }
for i = 2, #ARGV - 1, 2 do
  if not settable[ARGV[i]] then return redis.error_reply('update: unknown field ' .. tostring(ARGV[i])) end
end

local terms = redis.call('HMGET', KEYS[1], 'remaining', 'stocked')
local remaining, stocked = tonumber(terms[1]), tonumber(terms[2])
if not remaining then return { -1, 0 } end
local add = 0
if ARGV[1] ~= '' then add = tonumber(ARGV[1]) - stocked end
if remaining + add < 0 then return { -12, remaining } end

for i = 2, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local left = redis.call('HINCRBY', KEYS[1], 'remaining', add)
local total = redis.call('HINCRBY', KEYS[1], 'stocked', add)
return { 1, left, total }
