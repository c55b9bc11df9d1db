-- Shared helpers, prepended to every aggregates script.
-- Token amounts are non-negative decimal digit strings (fixed 18-decimal base units): Lua
-- numbers are doubles, so sums that may pass 2^53 are added as strings in 7-digit chunks.

local function split(s, sep)
  local out, i = {}, 1
  while true do
    local j = string.find(s, sep, i, true)
    if not j then
      out[#out + 1] = string.sub(s, i)
      return out
    end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local function num_list(csv)
  local out = {}
  if csv == '' then return out end
  for _, v in ipairs(split(csv, ',')) do out[#out + 1] = tonumber(v) end
  return out
end

local CHUNK = 10000000

local function chunks(s)
  local out = {}
  local i = #s
  while i > 0 do
    local j = i - 6
    if j < 1 then j = 1 end
    out[#out + 1] = tonumber(string.sub(s, j, i))
    i = j - 1
  end
  return out
end

local function join_chunks(c)
  local n = #c
  while n > 1 and c[n] == 0 do n = n - 1 end
  local parts = {string.format('%d', c[n])}
  for k = n - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', c[k]) end
  return table.concat(parts)
end

local function big_add(a, b)
  if not a or a == '' then a = '0' end
  if not b or b == '' then b = '0' end
  if #a < 16 and #b < 16 then
    return string.format('%.0f', tonumber(a) + tonumber(b))
  end
  local x, y, out, carry = chunks(a), chunks(b), {}, 0
  local n = math.max(#x, #y)
  for k = 1, n do
    local t = (x[k] or 0) + (y[k] or 0) + carry
    if t >= CHUNK then carry = 1; t = t - CHUNK else carry = 0 end
    out[k] = t
  end
  if carry > 0 then out[n + 1] = carry end
  return join_chunks(out)
end

-- a - b for a >= b >= 0.
local function big_sub(a, b)
  if not a or a == '' then a = '0' end
  if not b or b == '' then b = '0' end
  if #a < 16 and #b < 16 then
    local d = tonumber(a) - tonumber(b)
    if d < 0 then d = 0 end
    return string.format('%.0f', d)
  end
  local x, y, out, borrow = chunks(a), chunks(b), {}, 0
  for k = 1, #x do
    local t = x[k] - (y[k] or 0) - borrow
    if t < 0 then borrow = 1; t = t + CHUNK else borrow = 0 end
    out[k] = t
  end
  if borrow > 0 then return '0' end
  return join_chunks(out)
end

local function big_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- Accumulators: arrays of 7-digit chunks added without carrying (exact while each chunk stays
-- below 2^53, i.e. for up to ~9e8 additions), turned back into a digit string once.
local function acc_add(acc, ch)
  for k = 1, #ch do acc[k] = (acc[k] or 0) + ch[k] end
end

local function acc_string(acc)
  local out, carry = {}, 0
  local n = #acc
  for k = 1, n do
    local t = acc[k] + carry
    carry = math.floor(t / CHUNK)
    out[k] = t - carry * CHUNK
  end
  while carry > 0 do
    n = n + 1
    local c = math.floor(carry / CHUNK)
    out[n] = carry - c * CHUNK
    carry = c
  end
  if n == 0 then return '0' end
  return join_chunks(out)
end

-- Lua 5.1 in Redis unpacks at most ~8000 values: long argument lists go in slices.
local SLICE = 4000

local function hmget_all(key, fields)
  local out = {}
  for s = 1, #fields, SLICE do
    local part = redis.call('HMGET', key, unpack(fields, s, math.min(s + SLICE - 1, #fields)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
  return out
end

local function call_sliced(cmd, key, values)
  for s = 1, #values, SLICE do
    redis.call(cmd, key, unpack(values, s, math.min(s + SLICE - 1, #values)))
  end
end
