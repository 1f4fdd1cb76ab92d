-- Signatures arriving at a fixed rate: each thread hands out send times `interval` apart, and a
-- connection waits for its slot. A connection that falls behind sends at once until it has
-- caught up, so arrivals are not thinned by a slow server (latency is not corrected for that).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "signer.lua")

local next_slot = nil

request = sign_request

function delay()
  local now = bench_monotonic()
  next_slot = next_slot or now
  local slot = next_slot
  next_slot = next_slot + interval
  if slot <= now then
    return 0
  end
  return math.floor((slot - now) * 1000)
end
