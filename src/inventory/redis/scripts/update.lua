--[[
  update: applies PostgreSQL's values of a product to its loaded gate copy: the units ever stocked
  (remaining moves by the difference) and any of its terms (price, limit, hold, window, end, rules).
  Every value is absolute and carries the version of the product's row it was read at, so
  changes arriving out of order end at the newest: one older than the version last applied is
  ignored, and applying one twice is applying it once. The catalogue takes the row's lock for
  every change of terms or stock, so versions are given out one change at a time.

  KEYS[1] terms     hash: remaining, stocked, price, limit, hold, opens, closes, ended, accounts, funds, version
  KEYS[2..6]        the product's other keys (their markers say it is loaded; not changed)

  ARGV[1] the row's version these values were read at
  ARGV[2] mode:
            'check'  (before the catalogue takes units away, under the row's lock) all or nothing:
                     a stock change that would take more units than remain changes nothing
            'apply'  (after a change committed) the terms are applied even when the stock change
                     is refused, so one refused field never drops the others
            'force'  (the periodic resync, under the row's lock: PostgreSQL's values are the
                     truth now) as 'apply', whatever the version last applied
  ARGV[3] units stocked in all ('' : unchanged)
  ARGV[4..] pairs: field, value, for fields price, limit, hold, opens, closes, ended, accounts, funds
            ('' clears limit, closes, ended or accounts, and turns funds off)

  Returns { code, remaining, stocked }:
    1  applied
    3  older than the version applied already: nothing changed
  or, when the stock change was refused (fewer units remain than would be taken away):
  -12  { -12, remaining } : in 'check' mode nothing changed; otherwise the terms were applied
   -1  not loaded: the product's keys are missing (nothing changed)
]]
local settable = { price = true, limit = true, hold = true, opens = true, closes = true, ended = true, accounts = true, funds = true }
for i = 4, #ARGV - 1, 2 do
  if not settable[ARGV[i]] then return redis.error_reply('update: unknown field ' .. tostring(ARGV[i])) end
end
local version, mode = tonumber(ARGV[1]), ARGV[2]
if not version then return redis.error_reply('update: version must be a number, got ' .. tostring(ARGV[1])) end
if mode ~= 'check' and mode ~= 'apply' and mode ~= 'force' then
  return redis.error_reply('update: unknown mode ' .. tostring(mode))
end

local terms = redis.call('HMGET', KEYS[1], 'remaining', 'stocked', 'version')
local remaining, stocked, applied = tonumber(terms[1]), tonumber(terms[2]), tonumber(terms[3]) or 0
if not remaining or redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) < 5 then return { -1, 0 } end
if mode ~= 'force' and version < applied then return { 3, remaining, stocked } end

local add = 0
if ARGV[3] ~= '' then add = tonumber(ARGV[3]) - stocked end
local refused = remaining + add < 0
if refused and mode == 'check' then return { -12, remaining } end

for i = 4, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'version', version)
if refused then return { -12, remaining } end
local left = redis.call('HINCRBY', KEYS[1], 'remaining', add)
local total = redis.call('HINCRBY', KEYS[1], 'stocked', add)
return { 1, left, total }
