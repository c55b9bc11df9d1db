-- Time series: per series a hash of buckets (sum, count, max per bucket of bs seconds, with a
-- TTL) and a hash of running sums per window w over buckets (cur - w/bs, cur]. Advancing a
-- window subtracts the buckets that left it; lo only moves forward, so workers whose clocks
-- differ slightly never undo each other.

local function series_context(base, now, bs, windows)
  return {base = base, bs = bs, tw = windows, cur = math.floor(now / bs),
          ttl = windows[#windows] + 2 * bs, los = {}}
end

local function series_advance(ctx, series)
  if ctx.los[series] then return ctx.los[series] end
  local wk = ctx.base .. ':ts:w:' .. series
  local bk = ctx.base .. ':ts:b:' .. series
  local cur, bs = ctx.cur, ctx.bs
  local have_buckets = redis.call('EXISTS', bk) == 1
  local los = {}
  for idx, w in ipairs(ctx.tw) do
    local nb = w / bs
    local lo_new = cur - nb + 1
    local st = redis.call('HMGET', wk, 'lo' .. w, 's' .. w, 'n' .. w)
    local lo = tonumber(st[1])
    local largest = idx == #ctx.tw
    if lo == nil or lo_new - lo > nb then
      local sum, cnt = '0', 0
      if have_buckets then
        for b = lo_new, cur + 1 do
          local v = redis.call('HMGET', bk, b, 'n' .. b)
          if v[1] then sum = big_add(sum, v[1]) end
          cnt = cnt + (tonumber(v[2]) or 0)
        end
        if largest then
          for _, f in ipairs(redis.call('HKEYS', bk)) do
            local b = tonumber(string.match(f, '(%-?%d+)$'))
            if b and b < lo_new then redis.call('HDEL', bk, f) end
          end
        end
      end
      redis.call('HSET', wk, 'lo' .. w, lo_new, 's' .. w, sum, 'n' .. w, cnt)
      los[w] = lo_new
    elseif lo_new > lo then
      local sum, cnt = st[2] or '0', tonumber(st[3]) or 0
      if have_buckets then
        local fields = {}
        for b = lo, lo_new - 1 do
          fields[#fields + 1] = b
          fields[#fields + 1] = 'n' .. b
        end
        local vals = redis.call('HMGET', bk, unpack(fields))
        for i = 1, #vals, 2 do
          if vals[i] then sum = big_sub(sum, vals[i]) end
          cnt = cnt - (tonumber(vals[i + 1]) or 0)
        end
        if largest then
          for b = lo, lo_new - 1 do redis.call('HDEL', bk, b, 'n' .. b, 'm' .. b) end
        end
      end
      redis.call('HSET', wk, 'lo' .. w, lo_new, 's' .. w, sum, 'n' .. w, cnt)
      los[w] = lo_new
    else
      los[w] = lo
    end
  end
  ctx.los[series] = los
  return los
end

local function series_add(ctx, series, t, amount, track_max)
  local los = series_advance(ctx, series)
  local wk = ctx.base .. ':ts:w:' .. series
  local bk = ctx.base .. ':ts:b:' .. series
  local tw = ctx.tw
  local b = math.floor(t / ctx.bs)
  if b > ctx.cur then b = ctx.cur end
  if b >= los[tw[#tw]] then
    redis.call('HSET', bk, b, big_add(redis.call('HGET', bk, b) or '0', amount))
    redis.call('HINCRBY', bk, 'n' .. b, 1)
    if track_max then
      local m = redis.call('HGET', bk, 'm' .. b)
      if not m or big_gt(amount, m) then redis.call('HSET', bk, 'm' .. b, amount) end
    end
    redis.call('EXPIRE', bk, ctx.ttl)
  end
  local fields = {'tot', 'ntot'}
  for _, w in ipairs(tw) do
    fields[#fields + 1] = 's' .. w
    fields[#fields + 1] = 'n' .. w
  end
  local st = redis.call('HMGET', wk, unpack(fields))
  local out = {'tot', big_add(st[1] or '0', amount), 'ntot', (tonumber(st[2]) or 0) + 1}
  for i, w in ipairs(tw) do
    if b >= los[w] then
      out[#out + 1] = 's' .. w
      out[#out + 1] = big_add(st[1 + 2 * i] or '0', amount)
      out[#out + 1] = 'n' .. w
      out[#out + 1] = (tonumber(st[2 + 2 * i]) or 0) + 1
    end
  end
  redis.call('HSET', wk, unpack(out))
end

-- Largest single amount over the buckets of the last w seconds.
local function series_max(ctx, series, w)
  local bk = ctx.base .. ':ts:b:' .. series
  local fields = {}
  for b = ctx.cur - w / ctx.bs + 1, ctx.cur + 1 do fields[#fields + 1] = 'm' .. b end
  local best = nil
  for _, v in ipairs(redis.call('HMGET', bk, unpack(fields))) do
    if v and (best == nil or big_gt(v, best)) then best = v end
  end
  return best
end
