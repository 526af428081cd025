-- wrk script: POST one fixed body and CHECK every response against the expected one.
--   WRK_BODY_FILE    request body (read as bytes: JSON, msgpack, 1 MB payloads)
--   WRK_CT           request Content-Type (default application/json)
--   WRK_EXPECT_FILE  expected response body, byte for byte (the harness takes it from a response it
--                    has decoded and compared with the request first)
--   WRK_HEADER       one more request header, "Name: value" (e.g. the platform's Authorization)
--   WRK_RAW=1        also time every request with clock_gettime (only meaningful with -t1 -c1:
--                    wrk's own histogram is corrected for coordinated omission)
-- Prints one line: WRKJSON {...}. Counters: ok, bad_status (not 200), bad_body (200, other body).
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("WRK_BODY_FILE"))
wrk.headers["Content-Type"] = os.getenv("WRK_CT") or "application/json"
local extra = os.getenv("WRK_HEADER") or ""
if extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
local expect = slurp(os.getenv("WRK_EXPECT_FILE"))
local raw = os.getenv("WRK_RAW") == "1"

ok, bad_status, bad_body, sample = 0, 0, 0, ""
lat = {}
local threads = {}
local req, t0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  req = wrk.format()
end

if raw then
  function request()
    t0 = now_us()
    return req
  end
end

function response(status, headers, body)
  if raw and t0 then
    lat[#lat + 1] = now_us() - t0
    t0 = nil
  end
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif body ~= expect then
    bad_body = bad_body + 1
  else
    ok = ok + 1
    return
  end
  if sample == "" then
    sample = tostring(status) .. " " .. string.sub(body or "", 1, 120)
  end
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local n_ok, n_bs, n_bb, smp, all = 0, 0, 0, "", {}
  for _, t in ipairs(threads) do
    n_ok = n_ok + t:get("ok")
    n_bs = n_bs + t:get("bad_status")
    n_bb = n_bb + t:get("bad_body")
    if smp == "" then smp = t:get("sample") end
    local l = t:get("lat")
    for i = 1, #l do all[#all + 1] = l[i] end
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then return 0 end
    return all[math.max(1, math.min(#all, math.ceil(p / 100 * #all)))]
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"bad_status":%d,"bad_body":%d,' ..
    '"sample":%s,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,"raw_n":%d,"raw_p50_us":%.1f,"raw_p99_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, n_ok, n_bs, n_bb, quote(smp),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, #all, pct(50), pct(99)))
end
