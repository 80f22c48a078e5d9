--[[
  keyed-reserve: a keyed reserve in one call, on a single Redis (not a cluster): claim-key.lua,
  then reserve.lua, then keep-refusal.lua, as RedisGate.reserve calls them one after the other on
  a cluster (where the binding and the product's keys are on two shards), but atomically and in
  one round trip. gate.ts puts prune-ended.lua in front of this file and each of the three
  scripts' bodies as a local function taking its own KEYS and ARGV (`script_claim_key`,
  `script_reserve`, `script_keep_refusal`), so each runs exactly as it does on its own.

  KEYS[1..6] the product's keys, as reserve.lua takes them (prune-ended.lua reads them as KEYS)
  KEYS[7]    the key's binding, as claim-key.lua takes it

  ARGV[1..5] reserve.lua's: order id, buyer id, quantity, '1' (keyed), spendable cents
  ARGV[6]    the key retention (s)
  ARGV[7]    a refusal's code to keep if the key is bound now ('' : none), as claim-key.lua's ARGV[3]
  ARGV[8]    its detail
  ARGV[9]    the reserve refusals to keep on the binding, as ",code,code,": RedisGate's KEPT_REFUSALS

  Returns { claim code, ... }: claim-key.lua's reply when it answers (a negative first element),
  else { claim code (0: bound now, 1: bound to this order id already), reserve.lua's reply... }.
]]
local orderId, retention = ARGV[1], ARGV[6]
local binding = { KEYS[7] }
local claimed = script_claim_key(binding, { orderId, retention, ARGV[7], ARGV[8] })
if claimed[1] < 0 then return claimed end
local reply = script_reserve({ KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6] }, { ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] })
if reply.err then return reply end
local code = reply[1]
if code < 0 and string.find(ARGV[9], ',' .. code .. ',', 1, true) then
  script_keep_refusal(binding, { orderId, code, reply[2], retention })
end
table.insert(reply, 1, claimed[1])
return reply
