-- GET as fast as the connections allow, each time from a new client.
-- init args (optional): paths to read in turn; without them, the path of the URL given to wrk.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local headers = {}
local paths = {}
local turn = 0

function init(args)
  for _, path in ipairs(args) do
    table.insert(paths, path)
  end
end

function request()
  headers["X-Forwarded-For"] = forwarded_for()
  if #paths == 0 then
    return wrk.format("GET", nil, headers, nil)
  end
  turn = turn % #paths + 1
  return wrk.format("GET", paths[turn], headers, nil)
end
