-- Apply a batch of events to the aggregates, atomically and idempotently.
-- ARGV: base, now, applied_ttl, block_windows_csv, keep_blocks, bucket_s, time_windows_csv,
--       hll_bucket_s, hll_ttl, ops_history_s, ops_process_retention_s, applied_ttl_latest,
--       then one argument per event: code, id and the event's fields joined by the unit
--       separator (0x1f).
-- ARGV[1] is the base of one aggregate group and every event belongs to that group; every key
-- here is built from that base, and KEYS declares each of them (`layout.Layout.apply_keys`),
-- so the call runs on the group's cluster slot.
-- Returns one value per event: 1 = first application, 0 = already applied or superseded,
-- -1 = the event could not be applied (left unmarked so a later delivery retries it).

local B = ARGV[1]
local NOW = tonumber(ARGV[2])
local DONE_TTL = ARGV[3]
local WINDOWS = num_list(ARGV[4])
local KEEP = tonumber(ARGV[5])
local BS = tonumber(ARGV[6])
local TW = num_list(ARGV[7])
local HLL_BS = tonumber(ARGV[8])
local HLL_TTL = ARGV[9]
local OPS_HIST = tonumber(ARGV[10])
local OPS_RETAIN = tonumber(ARGV[11])
local LATEST_TTL = ARGV[12]
-- Prices, statuses and supplies only replace a latest value when newer (latest_put; a
-- supply sample not newer than the stored one returns early), and an ops sample only moves
-- what it describes forward in time: idempotent without the marker, which is kept briefly.
local LATEST_KINDS = {P = true, C = true, O = true, S = true}

-- Bitcoin: candidates per height, one active block per height, windows over (tip-N, tip].
local META = B .. ':btc:meta'
local ACTIVE = B .. ':btc:active'
local HEIGHTS = B .. ':btc:heights'
local CANDH = B .. ':btc:candh'
local DEAD = B .. ':btc:dead'
-- height -> JSON {r = hash -> record, s = hash -> arrival order, a = hash -> attribution}:
-- one hash for every height, so the keys a call touches do not depend on the data.
local CAND = B .. ':btc:cand'

local function win_key(n) return B .. ':btc:win:' .. n end

local function cand_get(h)
  local v = redis.call('HGET', CAND, h)
  if not v then return {r = {}, s = {}, a = {}} end
  local c = cjson.decode(v)
  c.r, c.s, c.a = c.r or {}, c.s or {}, c.a or {}
  return c
end

local function cand_put(h, c) redis.call('HSET', CAND, h, cjson.encode(c)) end

local function tip_get()
  local r = redis.call('ZREVRANGE', HEIGHTS, 0, 0)
  if #r == 0 then return nil end
  return tonumber(r[1])
end

local function hincr(key, field, d)
  if redis.call('HINCRBY', key, field, d) == 0 then redis.call('HDEL', key, field) end
end

-- rec = pool|entity|tx_count|subsidy|fees|time|difficulty|hash|version[|provider|jurisdiction]
-- (provider empty: the pool builds its own template; no jurisdiction: unknown).
-- Bump COUNTS when wcount counts something new: load() then recounts the windows.
local COUNTS = '2'
local function wcount(n, rec, d)
  local f = split(rec, '|')
  local k = win_key(n)
  hincr(k, 'p:' .. f[1], d)
  hincr(k, 'e:' .. f[2], d)
  local prov = f[10]
  if prov == nil or prov == '' then prov = f[1] end
  hincr(k, 't:' .. prov, d)
  hincr(k, 'q:' .. prov .. '|' .. f[1], d)
  local jur = f[11]
  if jur == nil or jur == '' or f[1] == 'unknown' then jur = 'unknown' end
  hincr(k, 'j:' .. jur, d)
  hincr(k, 'blocks', d)
  if tonumber(f[3]) == 1 then
    hincr(k, 'empty', d)
    hincr(k, 'x:' .. f[1], d)
  end
  hincr(k, 'fees', d * tonumber(f[5]))
  hincr(k, 'subsidy', d * tonumber(f[4]))
end

local function count_range(n, lo, hi, d)
  -- active heights in (lo, hi]
  local hs = redis.call('ZRANGEBYSCORE', HEIGHTS, '(' .. lo, hi)
  if #hs == 0 then return end
  local recs = hmget_all(ACTIVE, hs)
  for i = 1, #recs do
    if recs[i] then wcount(n, recs[i], d) end
  end
end

local function trim(tip)
  local cutoff = tip - KEEP
  local hs = redis.call('ZRANGEBYSCORE', CANDH, '-inf', cutoff)
  if #hs > 0 then
    call_sliced('HDEL', CAND, hs)
    call_sliced('HDEL', ACTIVE, hs)
    redis.call('ZREMRANGEBYSCORE', CANDH, '-inf', cutoff)
    redis.call('ZREMRANGEBYSCORE', HEIGHTS, '-inf', cutoff)
  end
  redis.call('ZREMRANGEBYSCORE', DEAD, '-inf', cutoff)
end

local function set_active(h, new)
  local old = redis.call('HGET', ACTIVE, h)
  if old == false then old = nil end
  if old == new then return false end
  local tip = tip_get()
  if old then
    for _, n in ipairs(WINDOWS) do
      if h > tip - n then wcount(n, old, -1) end
    end
    redis.call('HDEL', ACTIVE, h)
    redis.call('ZREM', HEIGHTS, h)
  end
  local newtip = tip_get()
  if new and (newtip == nil or h > newtip) then newtip = h end
  if tip ~= nil and newtip ~= nil and newtip ~= tip then
    for _, n in ipairs(WINDOWS) do
      local a, b = tip - n, newtip - n
      if b > a then count_range(n, a, b, -1) else count_range(n, b, a, 1) end
    end
  end
  if new then
    redis.call('HSET', ACTIVE, h, new)
    redis.call('ZADD', HEIGHTS, h, h)
    for _, n in ipairs(WINDOWS) do
      if h > newtip - n then wcount(n, new, 1) end
    end
  end
  redis.call('HINCRBY', META, 'version', 1)
  if newtip ~= nil and (tip == nil or newtip > tip) then trim(newtip) end
  return true
end

-- The live candidate applied last wins; an attribution overrides pool and entity when its
-- registry version is not older than the block's.
local function choose_active(h)
  local c = cand_get(h)
  local recs, seqs, attrs = c.r, c.s, c.a
  local best, best_seq = nil, -1
  for hash, rec in pairs(recs) do
    if not redis.call('ZSCORE', DEAD, hash) and seqs[hash] > best_seq then
      best, best_seq = hash, seqs[hash]
    end
  end
  if not best then return set_active(h, nil) end
  local rec = recs[best]
  local a = attrs[best]
  if a then
    local af = split(a, '|')
    local rf = split(rec, '|')
    if af[3] >= rf[9] then
      rf[1], rf[2] = af[1], af[2]
      if af[4] then rf[10], rf[11] = rf[10] or '', af[4] end
      rec = table.concat(rf, '|')
    end
  end
  return set_active(h, rec)
end

local function below_history(h)
  local tip = tip_get()
  return tip ~= nil and h <= tip - KEEP
end

local function on_block(a)
  local h, hash = tonumber(a[1]), a[2]
  if below_history(h) or redis.call('ZSCORE', DEAD, hash) then return 0 end
  local c = cand_get(h)
  if c.r[hash] then return 0 end
  local rec = table.concat({a[3], a[4], a[5], a[6], a[7], a[8], a[9], hash, a[10]}, '|')
  if (a[11] or '') ~= '' or (a[12] or 'unknown') ~= 'unknown' then
    rec = rec .. '|' .. (a[11] or '') .. '|' .. (a[12] or 'unknown')
  end
  local seq = redis.call('HINCRBY', META, 'seq', 1)
  c.r[hash], c.s[hash] = rec, seq
  cand_put(h, c)
  redis.call('ZADD', CANDH, h, h)
  choose_active(h)
  return 1
end

local function on_reorg(a)
  local depth = tonumber(a[1])
  for i = 3, #a, 2 do
    local h, hash = tonumber(a[i]), a[i + 1]
    redis.call('ZADD', DEAD, h, hash)
    if redis.call('HEXISTS', CAND, h) == 1 then choose_active(h) end
  end
  redis.call('HINCRBY', META, 'reorgs_total', 1)
  redis.call('HSET', META, 'last_reorg_depth', depth, 'last_reorg_time', a[2])
  return 1
end

local function on_attribution(a)
  local h, hash, version = tonumber(a[1]), a[2], a[5]
  if below_history(h) then return 0 end
  local c = cand_get(h)
  local old = c.a[hash]
  if old and split(old, '|')[3] > version then return 0 end
  local val = a[3] .. '|' .. a[4] .. '|' .. version
  if a[6] then val = val .. '|' .. a[6] end
  if old == val then return 0 end
  c.a[hash] = val
  cand_put(h, c)
  redis.call('ZADD', CANDH, h, h)
  choose_active(h)
  return 1
end

-- Time series: buckets of BS seconds and a running sum per window over (CUR-W/BS, CUR].
local SMETA = B .. ':ts:meta'
local TS = series_context(B, NOW, BS, TW)

-- Last values and small sets are gathered in memory and written once, in flush().
local meta_pending = {}
local latest = {}   -- hash key -> field -> {time, value}; loaded on first touch
local hll_pending = {}

local function latest_get(key, field)
  local h = latest[key]
  if not h then h = {}; latest[key] = h end
  local e = h[field]
  if e == nil then
    local v = redis.call('HGET', key, field)
    if v then
      e = {time = tonumber(split(v, '|')[1]), value = v, dirty = false}
    else
      e = false
    end
    h[field] = e
  end
  return e
end

-- Keep value (whose first |-field is its time) when it is newer than the stored one; on a
-- tie the greater string wins, so the outcome never depends on arrival order.
local function latest_put(key, field, t, value)
  local e = latest_get(key, field)
  if e and (t < e.time or (t == e.time and value <= e.value)) then return false end
  latest[key][field] = {time = t, value = value, dirty = true}
  return true
end

local function flush()
  series_flush(TS)
  local m = {}
  for series, json in pairs(meta_pending) do
    m[#m + 1] = series
    m[#m + 1] = json
  end
  if #m > 0 then call_sliced('HSET', SMETA, m) end
  meta_pending = {}
  for key, fields in pairs(latest) do
    local out = {}
    for field, e in pairs(fields) do
      if e and e.dirty then
        out[#out + 1] = field
        out[#out + 1] = e.value
        e.dirty = false
      end
    end
    if #out > 0 then call_sliced('HSET', key, out) end
  end
  for key, members in pairs(hll_pending) do
    call_sliced('PFADD', key, members)
    redis.call('EXPIRE', key, HLL_TTL)
  end
  hll_pending = {}
end

local function fmt_time(t) return string.format('%.17g', t) end

-- a: series, meta_json, amount, time, chain
local function on_flow(a, family, track_max)
  local series = family .. ':' .. a[1]
  local t = tonumber(a[4])
  meta_pending[series] = a[2]
  series_add(TS, series, t, a[3], track_max)
  latest_put(B .. ':stable:last', a[5], t, fmt_time(t))
  return 1
end

-- a: token/chain, meta_json, amount, time
local function on_supply(a)
  flush()
  local k = B .. ':supply:' .. a[1]
  local t = tonumber(a[4])
  local cur = redis.call('HMGET', k, 'time', 'supply', 'minted', 'burned')
  if cur[1] and tonumber(cur[1]) >= t then return 0 end
  local minted = redis.call('HGET', B .. ':ts:w:mint:' .. a[1], 'tot') or '0'
  local burned = redis.call('HGET', B .. ':ts:w:burn:' .. a[1], 'tot') or '0'
  if cur[1] then
    redis.call('HSET', k, 'prev_time', cur[1], 'prev_supply', cur[2],
               'prev_minted', cur[3], 'prev_burned', cur[4])
  end
  redis.call('HSET', SMETA, 'supply:' .. a[1], a[2])
  redis.call('HSET', k, 'time', a[4], 'supply', a[3], 'minted', minted, 'burned', burned,
             'meta', a[2])
  return 1
end

-- a: network, token, meta_json, amount, time, recipients...
local function on_payout(a)
  local t = tonumber(a[5])
  local series = 'dp:' .. a[1] .. '/' .. a[2]
  series_add(TS, series, t, a[4], false)
  meta_pending[series] = a[3]
  series_add(TS, 'dpn:' .. a[1], t, '0', false)
  meta_pending['dpn:' .. a[1]] = a[3]
  latest_put(B .. ':depin:last', a[1], t, fmt_time(t))
  if #a > 5 and t > NOW - 86400 - HLL_BS then
    local hk = B .. ':hll:' .. a[1] .. ':' .. math.floor(math.min(t, NOW) / HLL_BS)
    local list = hll_pending[hk]
    if not list then list = {}; hll_pending[hk] = list end
    for k = 6, #a do list[#list + 1] = a[k] end
  end
  return 1
end

-- a: symbol, time, price, sources_csv, stale_csv
local function on_price(a)
  local t = tonumber(a[2])
  if not latest_put(B .. ':prices', a[1], t, a[2] .. '|' .. a[3] .. '|' .. a[4]) then
    return 0
  end
  local sk = B .. ':price_sources'
  for _, pair in ipairs({{a[4], '1'}, {a[5], '0'}}) do
    if pair[1] ~= '' then
      for _, src in ipairs(split(pair[1], ',')) do
        latest_put(sk, src, t, a[2] .. '|' .. pair[2])
      end
    end
  end
  return 1
end

-- a: collector, connected, time
local function on_status(a)
  local t = tonumber(a[3])
  if not latest_put(B .. ':collectors', a[1], t, a[3] .. '|' .. a[2]) then return 0 end
  return 1
end

-- The monitor's own samples: the latest one whole, a short history of the figures whose
-- trend matters (group backlogs, dead-letter lengths, restarts), per process when it was
-- last seen and when it was first missed, and per component since when it has been down.
-- Times are the samplers' (the engine's clock), never the processes' own.
-- a: time, sample json, history json, then 'p|instance|heartbeat ttl|roles|stopping (1/0)'
--    per live process and 'c|instance/component|up (1/0)' per component
local function on_ops(a)
  local t = tonumber(a[1])
  local newest = latest_put(B .. ':ops:last', 'sample', t, a[1] .. '|' .. a[2])
  local hist = B .. ':ops:hist'
  redis.call('ZADD', hist, t, a[1] .. '|' .. a[3])
  local top = redis.call('ZREVRANGE', hist, 0, 0, 'WITHSCORES')
  redis.call('ZREMRANGEBYSCORE', hist, '-inf', '(' .. fmt_time(tonumber(top[2]) - OPS_HIST))
  -- procs: instance -> last_seen|ttl|roles|gone_at ('' while present)|stopping
  local procs = B .. ':ops:procs'
  local downs = B .. ':ops:down'
  local seen, comps = {}, {}
  for k = 4, #a do
    local f = split(a[k], '|')
    if f[1] == 'p' then
      seen[f[2]] = true
      local cur = redis.call('HGET', procs, f[2])
      local c = cur and split(cur, '|') or nil
      if not c or tonumber(c[1]) < t then
        -- Seen again after it was missed: present again (a late sample changes nothing).
        local gone = ''
        if c and c[4] ~= '' and tonumber(c[4]) > t then gone = c[4] end
        redis.call('HSET', procs, f[2], table.concat({a[1], f[3], f[4], gone, f[5]}, '|'))
      end
    elseif f[1] == 'c' and newest then
      comps[f[2]] = true
      if f[3] == '1' then
        redis.call('HDEL', downs, f[2])
      else
        redis.call('HSETNX', downs, f[2], a[1])
      end
    end
  end
  if newest then
    -- Components no longer reported (their process is gone) are not down any more.
    for _, key in ipairs(redis.call('HKEYS', downs)) do
      if not comps[key] then redis.call('HDEL', downs, key) end
    end
  end
  local flat = redis.call('HGETALL', procs)
  for i = 1, #flat, 2 do
    if not seen[flat[i]] then
      local c = split(flat[i + 1], '|')
      local gone = c[4]
      if tonumber(c[1]) < t and (gone == '' or t < tonumber(gone)) then
        gone = a[1]
        redis.call('HSET', procs, flat[i],
                   table.concat({c[1], c[2], c[3], gone, c[5] or '0'}, '|'))
      end
      if gone ~= '' and tonumber(gone) < t - OPS_RETAIN then
        redis.call('HDEL', procs, flat[i])
      end
    end
  end
  return 1
end

-- The block windows changed in the configuration: recount them from the per-height records.
local function on_rewindow(a)
  local tip = tip_get()
  for _, n in ipairs(WINDOWS) do
    redis.call('DEL', win_key(n))
    if tip ~= nil then count_range(n, tip - n, tip, 1) end
  end
  redis.call('HSET', META, 'windows', ARGV[4], 'counts', COUNTS)
  redis.call('HINCRBY', META, 'version', 1)
  return 1
end

local HANDLERS = {
  W = on_rewindow,
  B = on_block, R = on_reorg, A = on_attribution,
  M = function(a) return on_flow(a, 'mint', true) end,
  U = function(a) return on_flow(a, 'burn', false) end,
  S = on_supply, D = on_payout, P = on_price, C = on_status, O = on_ops,
}

local results = {}
for i = 13, #ARGV do
  local f = split(ARGV[i], '\31')
  local args = {}
  for k = 3, #f do args[k - 2] = f[k] end
  local r = 0
  local done = B .. ':done:' .. f[2]
  local ttl = LATEST_KINDS[f[1]] and LATEST_TTL or DONE_TTL
  if redis.call('SET', done, '1', 'NX', 'EX', ttl) then
    local ok, res = pcall(HANDLERS[f[1]], args)
    if ok then
      r = res
    else
      -- A malformed event must not take the batch down with it, nor stay marked applied.
      redis.call('DEL', done)
      r = -1
    end
  end
  results[#results + 1] = r
end
flush()
return results
