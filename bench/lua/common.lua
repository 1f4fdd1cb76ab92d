-- Shared by every bench script: thread ids, a clock, client addresses, the summary line.
-- wrk loads a script once per thread (each in its own Lua state) and once in its main state.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local timespec = ffi.new("bench_timespec")

-- Seconds on a clock that never jumps, for pacing.
function bench_monotonic()
  ffi.C.clock_gettime(1, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

-- A different client address for every request, sent as X-Forwarded-For (see bench/load.py):
-- each wrk run gets its own block of first octets, each thread one octet of it. BENCH_PROXY
-- adds the proxy nginx would add when wrk talks to gunicorn directly.
local clients = 0
local block = tonumber(os.getenv("BENCH_CLIENT_BLOCK") or "0")
local proxy = os.getenv("BENCH_PROXY") or ""
function forwarded_for()
  clients = clients + 1
  local first = 11 + (block + id) % 200
  if first >= 127 then
    first = first + 1
  end
  return string.format("%d.%d.%d.%d%s", first, math.floor(clients / 65536) % 256,
    math.floor(clients / 256) % 256, clients % 256, proxy)
end

-- Defaults for the main state, where wrk calls request() once without init().
id = 0
exhausted = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local spent = 0
  for _, thread in ipairs(threads) do
    spent = spent + (thread:get("exhausted") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %.0f, "connect": %d, "read": %d, "write": %d,'
      .. ' "status": %d, "timeout": %d, "p50_us": %.0f, "p99_us": %.0f, "max_us": %.0f,'
      .. ' "exhausted": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, spent))
end
