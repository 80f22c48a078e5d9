--[[
  keep-refusal: keeps the product's definitive refusal of a keyed request on the key's binding
  (claim-key.lua), so a retry of the request is refused the same way even if units came back
  meanwhile: the key's first definitive answer stands. Only on a binding to this order id with no
  refusal kept yet; a binding that is gone (expired, or lost with a Redis that restarted) is made
  again with the refusal, for the retention.

  KEYS[1] binding   string: JSON { o = order id } or { o, c = code, d = detail }

  ARGV[1] order id
  ARGV[2] the refusal's code
  ARGV[3] its detail
  ARGV[4] the key retention (s), for a binding made again

  Returns:
    1  kept
    0  nothing changed: the key is bound to another order id, or has a refusal kept already
]]
local orderId, code, detail, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local raw = redis.call('GET', KEYS[1])
local value = cjson.encode({ o = orderId, c = code, d = detail })
if not raw then
  redis.call('SET', KEYS[1], value, 'EX', retention)
  return 1
end
local bound = cjson.decode(raw)
if bound.o ~= orderId or bound.c then return 0 end
-- The binding keeps the expiry it was made with (PTTL rather than KEEPTTL: any Redis since 2.6).
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('SET', KEYS[1], value, 'PX', left) else redis.call('SET', KEYS[1], value, 'EX', retention) end
return 1
