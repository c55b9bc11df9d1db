-- Advance the named time series of one aggregate group to now and read their window sums,
-- totals and (for mints) the largest amount in the max window; supplies; unique DePIN
-- recipients from hourly HyperLogLogs.
-- ARGV: base, now, bucket_s, time_windows_csv, max_window_s, first and last recipient
--       bucket, the number of entries the caller knows ts:meta to hold, then the names to
--       read (series, and supply:<token> entries). KEYS: every key read (`Layout`).
-- Returns a JSON document; {"stale": true} when ts:meta holds entries the caller does not
-- know (it re-reads the names and calls again), so no series is ever left out.

local B = ARGV[1]
local NOW = tonumber(ARGV[2])
local TS = series_context(B, NOW, tonumber(ARGV[3]), num_list(ARGV[4]))
local MAXW = tonumber(ARGV[5])
local HLL_FIRST, HLL_LAST = tonumber(ARGV[6]), tonumber(ARGV[7])
local META = B .. ':ts:meta'

if redis.call('HLEN', META) ~= tonumber(ARGV[8]) then return cjson.encode({stale = true}) end

local out = {series = {}, supply = {}, recipients = {}}
for i = 9, #ARGV do
  local name = ARGV[i]
  local m = redis.call('HGET', META, name)
  local family = string.match(name, '^([^:]*)')
  if m and family == 'supply' then
    local flat = redis.call('HGETALL', B .. ':' .. name)
    local s = {}
    for k = 1, #flat, 2 do s[flat[k]] = flat[k + 1] end
    out.supply[string.sub(name, 8)] = s
  elseif m then
    series_advance(TS, name)
    local flat = redis.call('HGETALL', B .. ':ts:w:' .. name)
    local s = {meta = m}
    for k = 1, #flat, 2 do s[flat[k]] = flat[k + 1] end
    if family == 'mint' then s.largest = series_max(TS, name, MAXW) or '0' end
    out.series[name] = s
    if family == 'dpn' then
      local network = string.sub(name, 5)
      local keys = {}
      for b = HLL_FIRST, HLL_LAST do keys[#keys + 1] = B .. ':hll:' .. network .. ':' .. b end
      out.recipients[network] = redis.call('PFCOUNT', unpack(keys))
    end
  end
end
return cjson.encode(out)
