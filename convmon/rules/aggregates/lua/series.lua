-- Time series: per series a hash of buckets (sum, count, max per bucket of bs seconds, with a
-- TTL) and a hash of running sums per window w over buckets (cur - w/bs, cur]. Advancing a
-- window subtracts the buckets that left it; lo only moves forward, so workers whose clocks
-- differ slightly never undo each other.

local function series_context(base, now, bs, windows)
  return {base = base, bs = bs, tw = windows, cur = math.floor(now / bs),
          ttl = windows[#windows] + 2 * bs, los = {}, pending = {}}
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
        local vals = hmget_all(bk, fields)
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

-- Additions are gathered per series and bucket in Lua tables and written once per batch by
-- series_flush, so a batch of many events costs a few commands per series, not per event.
local function series_add(ctx, series, t, amount, track_max)
  local los = series_advance(ctx, series)
  local tw = ctx.tw
  local b = math.floor(t / ctx.bs)
  if b > ctx.cur then b = ctx.cur end
  local ch = chunks(amount)
  local p = ctx.pending[series]
  if not p then
    p = {buckets = {}, order = {}, tot = {}, ntot = 0, s = {}, n = {}}
    for _, w in ipairs(tw) do p.s[w], p.n[w] = {}, 0 end
    ctx.pending[series] = p
  end
  if b >= los[tw[#tw]] then
    local pb = p.buckets[b]
    if not pb then
      pb = {sum = {}, n = 0, max = false}
      p.buckets[b] = pb
      p.order[#p.order + 1] = b
    end
    acc_add(pb.sum, ch)
    pb.n = pb.n + 1
    if track_max and (not pb.max or big_gt(amount, pb.max)) then pb.max = amount end
  end
  acc_add(p.tot, ch)
  p.ntot = p.ntot + 1
  for _, w in ipairs(tw) do
    if b >= los[w] then
      acc_add(p.s[w], ch)
      p.n[w] = p.n[w] + 1
    end
  end
end

local function series_flush(ctx)
  for series, p in pairs(ctx.pending) do
    local wk = ctx.base .. ':ts:w:' .. series
    local bk = ctx.base .. ':ts:b:' .. series
    if #p.order > 0 then
      local fields = {}
      for _, b in ipairs(p.order) do
        fields[#fields + 1] = b
        fields[#fields + 1] = 'n' .. b
        fields[#fields + 1] = 'm' .. b
      end
      local cur = hmget_all(bk, fields)
      local out = {}
      for i, b in ipairs(p.order) do
        local pb = p.buckets[b]
        out[#out + 1] = b
        out[#out + 1] = big_add(cur[3 * i - 2] or '0', acc_string(pb.sum))
        out[#out + 1] = 'n' .. b
        out[#out + 1] = (tonumber(cur[3 * i - 1]) or 0) + pb.n
        local m = cur[3 * i]
        if pb.max and (not m or big_gt(pb.max, m)) then
          out[#out + 1] = 'm' .. b
          out[#out + 1] = pb.max
        end
      end
      call_sliced('HSET', bk, out)
      redis.call('EXPIRE', bk, ctx.ttl)
    end
    local fields = {'tot', 'ntot'}
    for _, w in ipairs(ctx.tw) do
      fields[#fields + 1] = 's' .. w
      fields[#fields + 1] = 'n' .. w
    end
    local st = redis.call('HMGET', wk, unpack(fields))
    local out = {'tot', big_add(st[1] or '0', acc_string(p.tot)),
                 'ntot', (tonumber(st[2]) or 0) + p.ntot}
    for i, w in ipairs(ctx.tw) do
      out[#out + 1] = 's' .. w
      out[#out + 1] = big_add(st[1 + 2 * i] or '0', acc_string(p.s[w]))
      out[#out + 1] = 'n' .. w
      out[#out + 1] = (tonumber(st[2 + 2 * i]) or 0) + p.n[w]
    end
    redis.call('HSET', wk, unpack(out))
  end
  ctx.pending = {}
end

-- Largest single amount over the buckets of the last w seconds.
local function series_max(ctx, series, w)
  local bk = ctx.base .. ':ts:b:' .. series
  local fields = {}
  for b = ctx.cur - w / ctx.bs + 1, ctx.cur + 1 do fields[#fields + 1] = 'm' .. b end
  local best = nil
  local vals = hmget_all(bk, fields)
  for i = 1, #vals do
    local v = vals[i]
    if v and (best == nil or big_gt(v, best)) then best = v end
  end
  return best
end
