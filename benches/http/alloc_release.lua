-- wrk script: allocate and release through the cidrcast HTTP API.
--
-- Each wrk thread alternates: allocate a new VM (POST /v1/allocations), then release the VM it
-- allocated LAG allocations earlier (DELETE /v1/allocations/{vm}), so a release never races its
-- allocation on another connection. VMs are spread over SUBDIVISIONS subdivisions `bench-N`,
-- N from SUB_OFFSET.
-- Statuses other than 200/201 are counted and reported; the run is invalid if there are any.

local SUBDIVISIONS = tonumber(os.getenv("BENCH_SUBDIVISIONS") or "16")
-- The first subdivision number (several daemons each loading their own subdivisions).
local SUB_OFFSET = tonumber(os.getenv("BENCH_SUB_OFFSET") or "0")
local LAG = tonumber(os.getenv("BENCH_LAG") or "2000")
local TOKEN = os.getenv("BENCH_TOKEN")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  allocated = 0
  -- wrk calls request() once before the run to see whether the script's requests vary, and
  -- discards that request: VM 1 is never allocated, so releases start after it.
  released = 1
  step = 0
  errors = 0
  statuses = {}
  -- BENCH_RUN tells apart wrk processes started in the same second (math.random is not seeded,
  -- so they would otherwise allocate the very same VM ids).
  run = (os.getenv("BENCH_RUN") or "") .. tostring(os.time()) .. "-" .. tostring(math.random(1000000))
  headers = { ["Content-Type"] = "application/json" }
  if TOKEN then headers["Authorization"] = "Bearer " .. TOKEN end
end

local function vm(n)
  return "w" .. run .. "-" .. id .. "-" .. n
end

function request()
  step = step + 1
  if step % 2 == 1 or allocated - released <= LAG then
    allocated = allocated + 1
    local sub = "bench-" .. (SUB_OFFSET + (id + allocated) % SUBDIVISIONS)
    local body = '{"subdivision":"' .. sub .. '","vm_id":"' .. vm(allocated) .. '"}'
    return wrk.format("POST", "/v1/allocations", headers, body)
  end
  released = released + 1
  return wrk.format("DELETE", "/v1/allocations/" .. vm(released), headers)
end

function response(status, headers, body)
  if status ~= 200 and status ~= 201 then
    errors = errors + 1
    local key = "s" .. status
    statuses[key] = (statuses[key] or 0) + 1
    if not first_error then first_error = status .. " " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local errs, allocs, rels = 0, 0, 0
  for _, t in ipairs(threads) do
    errs = errs + t:get("errors")
    allocs = allocs + t:get("allocated")
    rels = rels + t:get("released")
  end
  for _, t in ipairs(threads) do
    local st = t:get("statuses")
    if st then
      for k, v in pairs(st) do io.write(string.format("STATUS %s=%d\n", k, v)) end
    end
    local fe = t:get("first_error")
    if fe then io.write("FIRST_ERROR " .. fe .. "\n") end
  end
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f requests_per_s=%.0f allocations=%d releases=%d allocations_per_s=%.0f errors=%d " ..
    "(status=%d connect=%d read=%d write=%d timeout=%d) " ..
    "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
    summary.requests, secs, summary.requests / secs, allocs, rels, allocs / secs, errs,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
