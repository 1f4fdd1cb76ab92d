-- Sign as fast as the connections allow, every request a new signer.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "signer.lua")

request = sign_request
