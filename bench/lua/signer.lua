-- The sign form, filled in with a fresh address for every request.
-- init args: session cookie, the form's hidden fields (URL-encoded), letter slug, tag,
--            [signatures per second across all threads, number of threads, log file prefix]
-- Addresses are <tag>-<thread>-<n>@example.com, so no two requests of a run sign as one person.
path, tag, hidden_fields = "/", "main", ""
headers = {}
counter = 0
interval = nil
log = nil

function init(args)
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = args[1]}
  hidden_fields, path, tag = args[2], "/p/" .. args[3] .. "/sign", args[4]
  if args[5] and tonumber(args[5]) > 0 then
    interval = tonumber(args[6]) / tonumber(args[5])
  end
  if args[7] and args[7] ~= "" then
    log = assert(io.open(string.format("%s-%d.log", args[7], id), "w"))
    log:setvbuf("line")
  end
end

function sign_request()
  counter = counter + 1
  local address = string.format("%s-%d-%d@example.com", tag, id, counter)
  if log then
    log:write(string.format("%.6f %s\n", bench_wall_time(), address))
  end
  headers["X-Forwarded-For"] = next_client_address()
  local body = hidden_fields .. "&name=Bench+Signer&email="
    .. (address:gsub("@", "%%40")) .. "&affiliation=current&display=counted"
  return wrk.format("POST", path, headers, body)
end
