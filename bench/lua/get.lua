-- GET the URL given to wrk as fast as the connections allow.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
