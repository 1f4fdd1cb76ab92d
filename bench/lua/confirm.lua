-- Confirm pending signatures through their links, each link once.
-- init args: session cookie, CSRF token as a URL-encoded field, file of links, number of threads.
-- Thread k takes every k-th line. A thread that runs out asks for /c/spent, which the app
-- refuses (400), so running out shows up as errors, never as a confirmation counted twice.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

headers, body = {}, ""
links = {}
position = 0

function init(args)
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = args[1]}
  body = args[2]
  local threads, line_number = tonumber(args[4]), 0
  for line in io.lines(args[3]) do
    if line_number % threads == id then
      links[#links + 1] = line
    end
    line_number = line_number + 1
  end
end

function request()
  position = position + 1
  local link = links[position]
  if link == nil then
    exhausted = exhausted + 1
    link = "spent"
  end
  headers["X-Forwarded-For"] = forwarded_for()
  return wrk.format("POST", "/c/" .. link, headers, body)
end
