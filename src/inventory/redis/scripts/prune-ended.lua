--[[
  prune-ended: not a script of its own, but the function reserve.lua and release.lua share
  (gate.ts puts this file in front of each). Ended holds whose time has come leave `holds` and
  `ended`, at most PRUNE_PER_CALL per call: a bounded cost on every call, enough to keep up with
  the holds that end (each end is one release call, which prunes as many). Their units are
  counted in the terms' `pruned_cancelled` / `pruned_expired`, so the counts stay exact.

  KEYS[1] terms, KEYS[3] holds, KEYS[5] ended (the product's, as in every product script)
]]
local PRUNE_PER_CALL = 8

-- `spare`: an order id this call works on, left where it is (nil: none).
local function pruneEnded(now, spare)
  local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, PRUNE_PER_CALL + 1)
  for _, id in ipairs(due) do
    -- The marker member '~' is no hold.
    if id ~= '~' and id ~= spare then
      local raw = redis.call('HGET', KEYS[3], id)
      if raw then
        local gone = cjson.decode(raw)
        if gone.s == 'cancelled' or gone.s == 'expired' then
          redis.call('HINCRBY', KEYS[1], 'pruned_' .. gone.s, gone.q)
          redis.call('HDEL', KEYS[3], id)
        end
      end
      redis.call('ZREM', KEYS[5], id)
    end
  end
end
