-- Read the bitcoin windows: counts per window, tip record, reorg meta, and consecutive runs
-- per pool (computed from the per-height records, cached until the next change).
-- ARGV: base, block_windows_csv. KEYS: every key read (`Layout.btc_snapshot_keys`).
-- Returns a JSON document.

local B = ARGV[1]
local WINDOWS = num_list(ARGV[2])
local META = B .. ':btc:meta'
local ACTIVE = B .. ':btc:active'

local out = {windows = {}}
local meta = redis.call('HGETALL', META)
local m = {}
for i = 1, #meta, 2 do m[meta[i]] = meta[i + 1] end
out.meta = m
local top = redis.call('ZREVRANGE', B .. ':btc:heights', 0, 0)
if #top == 0 then return cjson.encode(out) end
local tip = tonumber(top[1])
out.tip = tip
out.tip_rec = redis.call('HGET', ACTIVE, tip)
for _, n in ipairs(WINDOWS) do
  local flat = redis.call('HGETALL', B .. ':btc:win:' .. n)
  local w = {}
  for i = 1, #flat, 2 do w[flat[i]] = tonumber(flat[i + 1]) end
  out.windows[tostring(n)] = w
end

local RUNS = B .. ':btc:runs'
local cached = redis.call('HMGET', RUNS, 'v', 'data')
local version = m.version or '0'
if cached[1] == version and cached[2] then
  out.runs = cjson.decode(cached[2])
  return cjson.encode(out)
end

local maxn = 0
for _, n in ipairs(WINDOWS) do if n > maxn then maxn = n end end
local pools = {}
local chunk = 1000
for start = tip - maxn + 1, tip, chunk do
  local fields = {}
  for h = start, math.min(start + chunk - 1, tip) do fields[#fields + 1] = h end
  for _, rec in ipairs(redis.call('HMGET', ACTIVE, unpack(fields))) do
    if rec then pools[#pools + 1] = string.match(rec, '^([^|]*)') else pools[#pools + 1] = false end
  end
end

local runs = {longest = {}}
local run_pool, run_len = false, 0
for _, n in ipairs(WINDOWS) do
  local longest = {}
  run_pool, run_len = false, 0
  for k = maxn - n + 1, maxn do
    local p = pools[k]
    if p and p == run_pool then run_len = run_len + 1
    elseif p then run_pool, run_len = p, 1
    else run_pool, run_len = false, 0 end
    if p and p ~= 'unknown' and run_len > (longest[p] or 0) then longest[p] = run_len end
  end
  runs.longest[tostring(n)] = longest
end
runs.current = {pool = run_pool or cjson.null, length = run_len}
local data = cjson.encode(runs)
redis.call('HSET', RUNS, 'v', version, 'data', data)
out.runs = runs
return cjson.encode(out)
