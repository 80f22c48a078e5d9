--[[
  rebuild-holds: writes one page of a rebuild's holds (PostgreSQL's allocations of the product),
  while the rebuild lock is this rebuild's: each hold by order id (so a retry of a known order id
  finds it, not a second unit), the held ones in `expiries`, and the units held or paid counted
  against their buyer. Pages are bounded, so Redis is never blocked for long by one product.

  KEYS[1..6] the product's keys (terms, buyers, holds, expiries, ended, unchecked)
  KEYS[7]    rebuild: the token of the rebuild under way

  ARGV[1] the rebuild's token
  ARGV[2] JSON array of holds, each { id, b, q, a, e, s, t }
  ARGV[3] how long the lock lives from now (ms): a long rebuild keeps it page by page
  ARGV[4] the key retention (ms). PostgreSQL does not say which holds were keyed, so every hold is
          marked keyed (k = 1): an ended one stays in holds (listed in ended) until the key
          retention has passed since it was made, since a key may bring its order id back until then

  Returns the number of holds written, or -17 when the lock is not this token's (nothing changed).
]]
if redis.call('GET', KEYS[7]) ~= ARGV[1] then return -17 end
redis.call('PEXPIRE', KEYS[7], ARGV[3])
local holds = cjson.decode(ARGV[2])
for _, hold in ipairs(holds) do
  local id = hold.id
  hold.id = nil
  hold.k = 1
  redis.call('HSET', KEYS[3], id, cjson.encode(hold))
  if hold.s == 'held' then redis.call('ZADD', KEYS[4], hold.e, id) end
  if hold.s == 'cancelled' or hold.s == 'expired' then redis.call('ZADD', KEYS[5], (hold.t or 0) + tonumber(ARGV[4]), id) end
  if hold.s == 'held' or hold.s == 'paid' then redis.call('HINCRBY', KEYS[2], hold.b, hold.q) end
end
return #holds
