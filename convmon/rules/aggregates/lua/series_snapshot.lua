-- Advance every time series to now and read its window sums, totals and (for mints) the
-- largest amount in the max window; unique DePIN recipients from hourly HyperLogLogs.
-- ARGV: base, now, bucket_s, time_windows_csv, max_window_s, hll_bucket_s, hll_window_s,
--       families_csv. Returns a JSON document.

local B = ARGV[1]
local NOW = tonumber(ARGV[2])
local TS = series_context(B, NOW, tonumber(ARGV[3]), num_list(ARGV[4]))
local MAXW = tonumber(ARGV[5])
local HLL_BS = tonumber(ARGV[6])
local HLL_W = tonumber(ARGV[7])
local wanted = {}
for _, f in ipairs(split(ARGV[8], ',')) do wanted[f] = true end

local out = {series = {}, supply = {}, recipients = {}}
local meta = redis.call('HGETALL', B .. ':ts:meta')
for i = 1, #meta, 2 do
  local name, m = meta[i], meta[i + 1]
  local family = string.match(name, '^([^:]*)')
  if wanted[family] then
    if family == 'supply' then
      local flat = redis.call('HGETALL', B .. ':' .. name)
      local s = {}
      for k = 1, #flat, 2 do s[flat[k]] = flat[k + 1] end
      out.supply[string.sub(name, 8)] = s
    else
      series_advance(TS, name)
      local flat = redis.call('HGETALL', B .. ':ts:w:' .. name)
      local s = {meta = m}
      for k = 1, #flat, 2 do s[flat[k]] = flat[k + 1] end
      if family == 'mint' then s.largest = series_max(TS, name, MAXW) or '0' end
      out.series[name] = s
      if family == 'dpn' then
        local network = string.sub(name, 5)
        local keys = {}
        local hb = math.floor(NOW / HLL_BS)
        for b = hb - HLL_W / HLL_BS + 1, hb do keys[#keys + 1] = B .. ':hll:' .. network .. ':' .. b end
        out.recipients[network] = redis.call('PFCOUNT', unpack(keys))
      end
    end
  end
end
return cjson.encode(out)
