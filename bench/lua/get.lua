-- GET the URL given to wrk as fast as the connections allow, each time from a new client.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local headers = {}

function request()
  headers["X-Forwarded-For"] = next_client_address()
  return wrk.format("GET", nil, headers, nil)
end
