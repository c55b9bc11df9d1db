-- Apply one DePIN supply-flow event (emission, burn or supply sample), idempotently.
-- KEYS: [1] the event's applied marker, [2] its series hash (network/token), [3] the hash
--       of series -> meta, [4] the prices hash (symbol -> "time|price|sources"), [5] the
--       token's price history (minute -> "time|price").
-- ARGV: [1] applied_ttl, [2] code E (emission) | B (burn) | S (supply), [3] series name,
--       [4] meta JSON, [5] amount (18-decimal units), [6] time (unix s), [7] purpose,
--       [8] price symbol, [9] price staleness (s), [10] retention (hours), [11] now,
--       [12] slot.
-- Series fields: e:<hour>/b:<hour> emitted/burned per hour, u:<hour> USD value of the
-- hour's burns that had a price at their time, nu:<hour> burns without one; te/tb totals,
-- tp:<purpose> burned per purpose, ft/le/lb first, last emission and last burn times;
-- sup/sup_t/sup_slot the latest supply sample (by slot) with te_s/tb_s the totals of the
-- flows up to its slot, sup0/sup0_slot/te0/tb0 the first sample (the reconciliation
-- baseline). A flow applied after a sample whose slot it precedes (it was still in the
-- collector's queue) is added to that sample's totals, and to the baseline's when it
-- precedes the baseline too, so the drift compares supply and flows slot for slot.
-- Returns 1 when applied, 0 when already applied.

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local S = KEYS[2]
local code, amount, t = ARGV[2], ARGV[5], tonumber(ARGV[6])
local retention, now = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])

if code == 'S' then
  local st = redis.call('HMGET', S, 'te', 'tb', 'sup0', 'sup_slot')
  local te, tb = st[1] or '0', st[2] or '0'
  if not st[3] then
    redis.call('HSET', S, 'sup0', amount, 'sup0_slot', ARGV[12], 'te0', te, 'tb0', tb)
  end
  if not st[4] or tonumber(ARGV[12]) >= tonumber(st[4]) then
    redis.call('HSET', S, 'sup', amount, 'sup_t', ARGV[6], 'sup_slot', ARGV[12],
               'te_s', te, 'tb_s', tb)
  end
  return 1
end

local cur = math.floor(now / 3600)
local h = math.floor(t / 3600)
if h > cur then h = cur end
local function big_field(field)
  redis.call('HSET', S, field, big_add(redis.call('HGET', S, field), amount))
end
local function keep_max(field)
  local v = tonumber(redis.call('HGET', S, field))
  if not v or t > v then redis.call('HSET', S, field, ARGV[6]) end
end
local ft = tonumber(redis.call('HGET', S, 'ft'))
if not ft or t < ft then redis.call('HSET', S, 'ft', ARGV[6]) end
local recent = h > cur - retention
local slot = tonumber(ARGV[12])
local samples = redis.call('HMGET', S, 'sup0_slot', 'sup_slot')
local function before_samples(total, baseline)
  if samples[2] and slot <= tonumber(samples[2]) then
    big_field(total)
    if samples[1] and slot <= tonumber(samples[1]) then big_field(baseline) end
  end
end

if code == 'E' then
  big_field('te')
  before_samples('te_s', 'te0')
  keep_max('le')
  if recent then big_field('e:' .. h) end
else
  big_field('tb')
  before_samples('tb_s', 'tb0')
  big_field('tp:' .. ARGV[7])
  keep_max('lb')
  if recent then
    big_field('b:' .. h)
    -- The price sample nearest the burn's time within the staleness: from the history
    -- (a burn fetched late is still valued at its own time), else the latest price.
    local stale = tonumber(ARGV[9])
    local minutes = {}
    for m = math.floor((t - stale) / 60), math.floor((t + stale) / 60) do
      minutes[#minutes + 1] = m
    end
    local samples = redis.call('HMGET', KEYS[5], unpack(minutes))
    samples[#samples + 1] = redis.call('HGET', KEYS[4], ARGV[8])
    local best, best_gap = nil, nil
    for _, raw in ipairs(samples) do
      if raw then
        local parts = split(raw, '|')
        local pt, price = tonumber(parts[1]), tonumber(parts[2])
        if pt and price and math.abs(pt - t) <= stale
           and (best_gap == nil or math.abs(pt - t) < best_gap) then
          best, best_gap = price, math.abs(pt - t)
        end
      end
    end
    local priced = best ~= nil
    if priced then
      redis.call('HINCRBYFLOAT', S, 'u:' .. h, tonumber(amount) / 1e18 * best)
    end
    if not priced then redis.call('HINCRBY', S, 'nu:' .. h, 1) end
  end
end

-- Once per hour and series: drop hourly fields that left the retention.
if tonumber(redis.call('HGET', S, 'pruned')) ~= cur then
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', S)) do
    local b = tonumber(string.match(f, '^n?[ebu]:(%-?%d+)$'))
    if b and b <= cur - retention then old[#old + 1] = f end
  end
  if #old > 0 then call_sliced('HDEL', S, old) end
  redis.call('HSET', S, 'pruned', cur)
end
return 1
