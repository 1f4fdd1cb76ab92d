-- The sign form, filled in with a new address every request, as fast as the connections allow
-- or, with BENCH_INTERVAL set, paced: each thread hands out send times that many seconds apart,
-- and a connection that falls behind sends at once to catch up.
-- init args: session cookie, the form's hidden fields (URL-encoded), letter slug, tag
-- Addresses are <tag>-<thread>-<n>@example.com, so no two requests of a run sign as one person.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local path, tag, hidden_fields = "/", "main", ""
local headers = {}
local counter = 0
local interval = tonumber(os.getenv("BENCH_INTERVAL") or "")
local next_slot = nil

function init(args)
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = args[1]}
  hidden_fields, path, tag = args[2], "/p/" .. args[3] .. "/sign", args[4]
end

function request()
  counter = counter + 1
  local address = string.format("%s-%d-%d%%40example.com", tag, id, counter)
  headers["X-Forwarded-For"] = forwarded_for()
  local body = hidden_fields .. "&name=Bench+Signer&email=" .. address
    .. "&affiliation=current&display=counted"
  return wrk.format("POST", path, headers, body)
end

-- Defined only when paced: wrk asks the main state whether the script has a delay().
if interval then
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
end
