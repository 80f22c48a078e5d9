--[[
  claim-key: binds a buyer's Idempotency-Key to one request, on every product: the first request
  that reaches the gate with the key binds it to its order id (which orders derives from buyer,
  key and the request's body, so one order id is one request); any other order id under the key
  is another request, refused as reused. Called before the product's reserve.lua, on the buyer's
  own hash tag (RedisGate.reserve says why in that order). The binding expires with the key
  retention PostgreSQL uses for its key rows.

  With a refusal in ARGV[3] (this process already knows the product is sold out), a key not bound
  yet is bound with that refusal kept, so the request is answered without the product's script.

  KEYS[1] binding   string: JSON { o = order id } or { o, c = code, d = detail } with the kept refusal

  ARGV[1] order id
  ARGV[2] the key retention (s)
  ARGV[3] a refusal's code to keep if the key is bound now ('' : none)
  ARGV[4] its detail

  Returns:
    { 0 }           bound now, nothing kept: reserve
    { 1 }           bound to this order id already, nothing kept: reserve (it finds its hold, if any)
    { code, detail } the refusal of ARGV[3], kept now with the binding made now: answer it
    { code, detail, 1 } the refusal kept for this order id earlier (a retry): answer it
    { -13, 0 }      bound to another order id (another request): refused, nothing changed
]]
local orderId, retention, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local raw = redis.call('GET', KEYS[1])
if raw then
  local bound = cjson.decode(raw)
  if bound.o ~= orderId then return { -13, 0 } end
  if bound.c then return { bound.c, bound.d, 1 } end
  return { 1 }
end
if keep ~= '' then
  redis.call('SET', KEYS[1], cjson.encode({ o = orderId, c = tonumber(keep), d = tonumber(ARGV[4]) }), 'EX', retention)
  return { tonumber(keep), tonumber(ARGV[4]) }
end
redis.call('SET', KEYS[1], cjson.encode({ o = orderId }), 'EX', retention)
return { 0 }
