--[[
  unlock: releases a product's stock lock only if it is still held with this token (compare and
  delete), so a holder whose lock expired and was taken by another cannot release the other's.

  KEYS[1] lock      string: the holder's token (SET NX PX)

  ARGV[1] token

  Returns:
    1  released
    0  not held with this token (expired, or taken by another): nothing changed
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
